package io.actovisor.testkit.fault;

import io.actovisor.memory.sys.Errno;
import java.time.Duration;
import java.util.Objects;
import java.util.Optional;

/**
 * One IOMMU fault: the {@code nth} (from 1) {@link Operation} of a wrapped backend fails with {@code errno}, or
 * stalls for {@code stall} and then proceeds.
 *
 * @param errno the errno the failure reports (e.g. 12 for ENOMEM), when it fails
 * @param stall how long the operation blocks before it proceeds, when it stalls
 */
public record IommuFault(Operation operation, int nth, Optional<Integer> errno, Optional<Duration> stall) {
    /** What the fault hits. {@code PIN} counts the same calls as {@code MAP} (a map pins), but fails as a pin. */
    public enum Operation {
        MAP,
        UNMAP,
        PIN
    }

    public IommuFault {
        Objects.requireNonNull(operation, "operation");
        if (nth < 1) {
            throw new IllegalArgumentException("the faulty operation is counted from 1, not " + nth);
        }
        if (errno.isPresent() == stall.isPresent()) {
            throw new IllegalArgumentException("an IOMMU fault either fails with an errno or stalls");
        }
    }

    /** The {@code nth} {@code operation} fails with {@code errno}. */
    public static IommuFault fail(Operation operation, int nth, int errno) {
        return new IommuFault(operation, nth, Optional.of(errno), Optional.empty());
    }

    /** The {@code nth} {@code operation} blocks for {@code stall}, then proceeds. */
    public static IommuFault stall(Operation operation, int nth, Duration stall) {
        return new IommuFault(operation, nth, Optional.empty(), Optional.of(stall));
    }

    @Override
    public String toString() {
        return operation.name().toLowerCase(java.util.Locale.ROOT) + " #" + nth + " "
                + errno.map(e -> "fails with " + Errno.name(e)).orElseGet(() -> "stalls " + stall.get().toMillis()
                        + " ms");
    }
}
