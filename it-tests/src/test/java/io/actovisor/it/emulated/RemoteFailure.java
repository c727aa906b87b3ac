package io.actovisor.it.emulated;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.ArrayList;
import java.util.List;

/**
 * A failure thrown in the emulated KVM host, rebuilt on this side with the guest's message and stack frames so that
 * the surefire report shows it as if the test had run here. Its {@code toString()} names the guest's exception
 * class; an assertion failure in the guest stays a {@link RemoteAssertionFailure} (a test failure, not an error).
 */
class RemoteFailure extends RuntimeException {
    private final String remoteClass;

    RemoteFailure(String remoteClass, String message) {
        super(message);
        this.remoteClass = remoteClass;
    }

    @Override
    public String toString() {
        String message = getLocalizedMessage();
        return message == null || message.isEmpty() ? remoteClass : remoteClass + ": " + message;
    }

    /** The failure the guest described in {@code error}. */
    static Throwable of(JsonNode error) {
        String type = error.path("class").asText("unknown");
        String message = error.path("message").asText("");
        Throwable t = isAssertion(type) ? new RemoteAssertionFailure(type, message) : new RemoteFailure(type, message);
        List<StackTraceElement> frames = new ArrayList<>();
        for (JsonNode f : error.path("frames")) {
            frames.add(new StackTraceElement(orNull(f.path(6)), orNull(f.path(4)), orNull(f.path(5)),
                    f.get(0).asText(), f.get(1).asText(), orNull(f.path(2)), f.get(3).asInt()));
        }
        t.setStackTrace(frames.toArray(StackTraceElement[]::new));
        if (error.has("cause")) {
            t.initCause(of(error.get("cause")));
        }
        return t;
    }

    private static String orNull(JsonNode text) {
        return text.asText("").isEmpty() ? null : text.asText();
    }

    private static boolean isAssertion(String type) {
        try {
            return AssertionError.class.isAssignableFrom(Class.forName(type, false,
                    RemoteFailure.class.getClassLoader()));
        } catch (ClassNotFoundException | LinkageError e) {
            return false;
        }
    }

    /** An assertion that failed in the guest. */
    static final class RemoteAssertionFailure extends AssertionError {
        private final String remoteClass;

        RemoteAssertionFailure(String remoteClass, String message) {
            super(message);
            this.remoteClass = remoteClass;
        }

        @Override
        public String toString() {
            String message = getLocalizedMessage();
            return message == null || message.isEmpty() ? remoteClass : remoteClass + ": " + message;
        }
    }
}
