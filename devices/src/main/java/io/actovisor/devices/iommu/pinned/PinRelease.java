package io.actovisor.devices.iommu.pinned;

import io.actovisor.kernel.uring.IoUring;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.sys.Errno;
import io.actovisor.memory.sys.NativeException;
import io.actovisor.memory.sys.Posix;
import io.actovisor.memory.sys.ProcessResources;
import java.util.ArrayList;
import java.util.List;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * How the {@code pinned} backend releases the pins of one mapping so that the kernel has dropped them by the time
 * {@code unmap} returns (coordinated discard runs {@code madvise} right after). Kernels differ: on 6.18 emptying a
 * slot of a fixed-buffer table ({@code IORING_REGISTER_BUFFERS_UPDATE}) unpins at once; on 6.1 the old buffer is
 * put from delayed work about a second later, while {@code IORING_UNREGISTER_BUFFERS} waits for every put (it
 * quiesces the table). So the mode is chosen by {@link #probe probing} what the kernel does, never by its version.
 */
public enum PinRelease {
    /** One ring, one slot per mapping; an unmap empties the slot (the kernel unpins before the update returns). */
    SLOT_UPDATE,
    /** One ring per mapping with a one-slot table; an unmap unregisters the table (synchronous) and closes it. */
    RING_PER_MAPPING;

    private static final Logger LOG = LoggerFactory.getLogger(PinRelease.class);
    /** An odd size, so that an unrelated pin change elsewhere in the process is unlikely to match it. */
    private static final int PROBE_PAGES = 17;
    private static final int ROUNDS = 3;
    private static volatile Probe probed;

    /**
     * What the probe saw: the chosen mode, whether its release was confirmed synchronous, and the {@code VmPin}
     * readings (kB) of each round: before the pin, pinned, after the slot update, after the unregister.
     */
    public record Probe(PinRelease mode, boolean confirmed, List<String> rounds) {
        public Probe {
            rounds = List.copyOf(rounds);
        }
    }

    /** The mode for this kernel, probed once per process. */
    public static PinRelease ofThisKernel() {
        return probeOnce().mode();
    }

    /** The probe of this kernel, run once per process (the first pinned IOMMU runs it). */
    public static Probe probeOnce() {
        Probe p = probed;
        if (p == null) {
            synchronized (PinRelease.class) {
                if (probed == null) {
                    probed = probe(Posix.system());
                    LOG.info("io_uring pin release on this kernel: {} (confirmed synchronous: {}; VmPin kB per round "
                            + "before/pinned/after update/after unregister: {})", probed.mode(), probed.confirmed(),
                            probed.rounds());
                    if (!probed.confirmed()) {
                        LOG.warn("neither an io_uring buffer update nor an unregister released its pins before it "
                                + "returned; coordinated discard on the pinned backend cannot confirm unpinning here");
                    }
                }
                p = probed;
            }
        }
        return p;
    }

    /**
     * Pin {@value #PROBE_PAGES} pages as one fixed buffer, empty the slot and read {@code VmPin}; then unregister the
     * table and read it again. {@link #SLOT_UPDATE} when every round saw the update release exactly those pages,
     * else {@link #RING_PER_MAPPING} (confirmed when the unregister released them).
     */
    static Probe probe(Posix posix) {
        long bytes = PROBE_PAGES * HostMemory.PAGE_SIZE;
        long kib = bytes / 1024;
        boolean updateReleases = true;
        boolean unregisterReleases = true;
        List<String> rounds = new ArrayList<>();
        try (HostMemory memory = HostMemory.anonymous(posix, "pin-release-probe", bytes);
                IoUring ring = IoUring.open(posix, 1)) {
            memory.populate(0, bytes);
            for (int round = 0; round < ROUNDS; round++) {
                ring.registerSparseBuffers(1);
                long before = vmPin();
                ring.setBuffer(0, memory.base().value(), bytes);
                long pinned = vmPin();
                ring.clearBuffer(0);
                long afterUpdate = vmPin();
                unregister(ring);
                long afterUnregister = vmPin();
                rounds.add(before + "/" + pinned + "/" + afterUpdate + "/" + afterUnregister);
                updateReleases &= pinned - before == kib && pinned - afterUpdate == kib;
                unregisterReleases &= afterUnregister == before;
            }
        }
        return updateReleases ? new Probe(SLOT_UPDATE, true, rounds)
                : new Probe(RING_PER_MAPPING, unregisterReleases, rounds);
    }

    /** Unregister {@code ring}'s buffer table, again if a signal interrupted the wait for its puts. */
    static void unregister(IoUring ring) {
        for (int attempt = 0; ; attempt++) {
            try {
                ring.unregisterBuffers();
                return;
            } catch (NativeException e) {
                if (e.errno() != Errno.EINTR || attempt >= 100) {
                    throw e;
                }
            }
        }
    }

    private static long vmPin() {
        return ProcessResources.statusKib("VmPin");
    }
}
