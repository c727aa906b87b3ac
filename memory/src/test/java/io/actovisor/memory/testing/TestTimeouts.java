package io.actovisor.memory.testing;

import java.time.Duration;

/**
 * The one factor every test timeout is multiplied by: system property {@value #PROPERTY} (default 1). A slow host
 * sets it once instead of each test being tuned: the emulated KVM host (QEMU TCG) runs its guest JVM with 10. Pekko's
 * typed test kit dilates its own waits by {@code pekko.actor.testkit.typed.timefactor}, and actor systems wait
 * {@code pekko.logger-startup-timeout} for their logger; {@link FacilitySession} derives both from this factor.
 */
public final class TestTimeouts {
    /** The system property holding the factor. */
    public static final String PROPERTY = "actovisor.test.timeout-factor";

    private TestTimeouts() {
    }

    /** The factor; a value that is not a number of at least 1 is an error naming it. */
    public static double factor() {
        String raw = System.getProperty(PROPERTY);
        if (raw == null || raw.isBlank()) {
            return 1;
        }
        double factor;
        try {
            factor = Double.parseDouble(raw.trim());
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(PROPERTY + " must be a number of at least 1, was '" + raw + "'", e);
        }
        if (!(factor >= 1)) {
            throw new IllegalArgumentException(PROPERTY + " must be a number of at least 1, was '" + raw + "'");
        }
        return factor;
    }

    /** {@code timeout} times the factor. */
    public static Duration scaled(Duration timeout) {
        return Duration.ofNanos((long) (timeout.toNanos() * factor()));
    }

    /** {@code seconds} times the factor, in whole seconds (at least {@code seconds}). */
    public static long scaledSeconds(long seconds) {
        return (long) Math.ceil(seconds * factor());
    }
}
