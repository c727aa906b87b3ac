package io.actovisor.it.emulated;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.PrintStream;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.junit.platform.engine.TestExecutionResult;
import org.junit.platform.engine.TestSource;
import org.junit.platform.engine.support.descriptor.ClassSource;
import org.junit.platform.engine.support.descriptor.MethodSource;
import org.junit.platform.launcher.TestExecutionListener;
import org.junit.platform.launcher.TestIdentifier;

/**
 * The line protocol between the guest's {@link GuestTestRunner} and the host's {@link EmulatedKvmEngine}: one JSON
 * object a line, {@code "event"} naming what happened ({@code started}, {@code registered}, {@code skipped},
 * {@code finished}), {@code "id"} the JUnit unique id in the guest's Jupiter engine, a failure as its class, message
 * and stack frames.
 */
final class GuestEvents {
    static final String RUNNER_STARTED = "runner-started";
    static final String RUNNER_FAILED = "runner-failed";
    static final String STARTED = "started";
    static final String REGISTERED = "registered";
    static final String SKIPPED = "skipped";
    static final String FINISHED = "finished";
    static final String DONE = "done";
    static final ObjectMapper JSON = new ObjectMapper();

    private GuestEvents() {
    }

    /** Writes events as JSON lines; one line per call, so a guest that dies leaves only whole events behind. */
    static final class Writer {
        private final PrintStream out;

        Writer(PrintStream out) {
            this.out = out;
        }

        synchronized void write(Map<String, ?> event) {
            try {
                out.println(JSON.writeValueAsString(event));
            } catch (JsonProcessingException e) {
                throw new IllegalStateException("cannot encode the test event " + event, e);
            }
        }
    }

    /** Turns the guest launcher's execution events into lines. */
    static final class Listener implements TestExecutionListener {
        private final Writer writer;

        Listener(Writer writer) {
            this.writer = writer;
        }

        @Override
        public void dynamicTestRegistered(TestIdentifier id) {
            writer.write(identify(REGISTERED, id));
        }

        @Override
        public void executionStarted(TestIdentifier id) {
            writer.write(identify(STARTED, id));
        }

        @Override
        public void executionSkipped(TestIdentifier id, String reason) {
            Map<String, Object> event = identify(SKIPPED, id);
            event.put("reason", reason);
            writer.write(event);
        }

        @Override
        public void executionFinished(TestIdentifier id, TestExecutionResult result) {
            Map<String, Object> event = identify(FINISHED, id);
            event.put("status", result.getStatus().name());
            result.getThrowable().ifPresent(t -> event.put("error", describe(t)));
            writer.write(event);
        }

        private static Map<String, Object> identify(String kind, TestIdentifier id) {
            Map<String, Object> event = new LinkedHashMap<>();
            event.put("event", kind);
            event.put("id", id.getUniqueId());
            id.getParentId().ifPresent(parent -> event.put("parent", parent));
            event.put("name", id.getDisplayName());
            event.put("legacyName", id.getLegacyReportingName());
            event.put("type", id.getType().name());
            id.getSource().flatMap(GuestEvents::source).ifPresent(source -> event.put("source", source));
            return event;
        }
    }

    static Optional<Map<String, String>> source(TestSource source) {
        if (source instanceof MethodSource m) {
            return Optional.of(Map.of("class", m.getClassName(), "method", m.getMethodName(), "parameters",
                    m.getMethodParameterTypes() == null ? "" : m.getMethodParameterTypes()));
        }
        if (source instanceof ClassSource c) {
            return Optional.of(Map.of("class", c.getClassName()));
        }
        return Optional.empty();
    }

    static TestSource source(JsonNode node) {
        if (node == null || !node.has("class")) {
            return null;
        }
        if (node.has("method")) {
            String parameters = node.path("parameters").asText("");
            return MethodSource.from(node.get("class").asText(), node.get("method").asText(),
                    parameters.isEmpty() ? null : parameters);
        }
        return ClassSource.from(node.get("class").asText());
    }

    /** A throwable as class, message, frames and cause (a few levels deep). */
    static Map<String, Object> describe(Throwable t) {
        return describe(t, 0);
    }

    private static String nonNull(String s) {
        return s == null ? "" : s;
    }

    private static Map<String, Object> describe(Throwable t, int depth) {
        Map<String, Object> d = new LinkedHashMap<>();
        d.put("class", t.getClass().getName());
        d.put("message", t.getMessage() == null ? "" : t.getMessage());
        List<List<Object>> frames = new ArrayList<>();
        for (StackTraceElement e : t.getStackTrace()) {
            frames.add(List.of(e.getClassName(), e.getMethodName(), nonNull(e.getFileName()), e.getLineNumber(),
                    nonNull(e.getModuleName()), nonNull(e.getModuleVersion()), nonNull(e.getClassLoaderName())));
        }
        d.put("frames", frames);
        if (t.getCause() != null && t.getCause() != t && depth < 5) {
            d.put("cause", describe(t.getCause(), depth + 1));
        }
        return d;
    }
}
