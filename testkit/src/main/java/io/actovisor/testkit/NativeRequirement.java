package io.actovisor.testkit;

import static org.junit.jupiter.api.Assertions.fail;

import java.util.Optional;
import org.junit.jupiter.api.Assumptions;

/**
 * Native tests need a facility (KVM, io_uring, pagemap PFNs, ...). Where it is missing they are skipped with the
 * reason; with {@code ACTOVISOR_REQUIRE_NATIVE=1} (set by CI) they fail instead, so a machine that silently lost a
 * facility cannot turn the suite green.
 */
public final class NativeRequirement {
    public static final String VARIABLE = "ACTOVISOR_REQUIRE_NATIVE";

    private NativeRequirement() {
    }

    /** Whether the environment demands native facilities. */
    public static boolean required() {
        return "1".equals(System.getenv(VARIABLE)) || "true".equalsIgnoreCase(System.getenv(VARIABLE));
    }

    /** Skip (or, when required, fail) unless {@code unavailabilityCause} is empty. */
    public static void require(String facility, Optional<String> unavailabilityCause) {
        if (unavailabilityCause.isEmpty()) {
            return;
        }
        String message = facility + " is not available: " + unavailabilityCause.get();
        if (required()) {
            fail(message + " (and " + VARIABLE + "=1 demands it)");
        }
        Assumptions.abort(message);
    }

    /** Skip with the reason even under {@link #VARIABLE}: for facilities CI is not expected to have (VFIO). */
    public static void optional(String facility, Optional<String> unavailabilityCause) {
        unavailabilityCause.ifPresent(cause -> Assumptions.abort(facility + " is not available: " + cause));
    }
}
