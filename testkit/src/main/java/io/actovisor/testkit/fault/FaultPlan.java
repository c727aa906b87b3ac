package io.actovisor.testkit.fault;

import io.actovisor.memory.sys.Errno;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import java.util.SplittableRandom;

/**
 * A fault schedule drawn from a {@link Seed}: one IOMMU fault (the nth map, unmap or pin fails with an errno, or
 * stalls) and, where the scenario names actors, one crash (an actor at its nth message). The same seed and shape
 * always give the same plan.
 *
 * @param crash the actor to crash and at which message, if the scenario has actors to crash
 */
public record FaultPlan(Seed seed, IommuFault iommu, Optional<Crash> crash) {
    /** Crash actor {@code actor} at its {@code nth} message. */
    public record Crash(String actor, int nth) {
    }

    /** The errnos a failing IOMMU operation reports, as the kernel's type1 driver would. */
    public static final List<Integer> ERRNOS = List.of(Errno.ENOMEM, Errno.EFAULT, Errno.EINVAL, Errno.EBUSY,
            Errno.ENOSPC);

    /**
     * The plan of {@code seed} for a scenario of shape {@code shape} with {@code operations} IOMMU operations at most
     * and {@code actors} that may crash (empty: no crash) within {@code messages} messages each.
     *
     * @throws IllegalArgumentException when the seed belongs to a scenario of another shape
     */
    public static FaultPlan draw(Seed seed, String shape, int operations, List<String> actors, int messages) {
        seed.forShape(shape);
        if (operations < 1 || messages < 1) {
            throw new IllegalArgumentException("a fault plan needs at least one operation and one message, got "
                    + operations + " and " + messages);
        }
        SplittableRandom random = seed.random();
        IommuFault.Operation op = IommuFault.Operation.values()[random.nextInt(IommuFault.Operation.values().length)];
        int nth = 1 + random.nextInt(operations);
        IommuFault iommu = random.nextInt(4) == 0
                ? IommuFault.stall(op, nth, Duration.ofMillis(10 + random.nextInt(90)))
                : IommuFault.fail(op, nth, ERRNOS.get(random.nextInt(ERRNOS.size())));
        Optional<Crash> crash = actors.isEmpty() ? Optional.empty()
                : Optional.of(new Crash(actors.get(random.nextInt(actors.size())), 1 + random.nextInt(messages)));
        return new FaultPlan(seed, iommu, crash);
    }
}
