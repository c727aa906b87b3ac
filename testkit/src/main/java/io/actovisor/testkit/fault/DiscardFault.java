package io.actovisor.testkit.fault;

import io.actovisor.memory.sys.Mman;
import io.actovisor.memory.sys.NativeException;
import io.actovisor.memory.sys.Posix;
import io.actovisor.memory.sys.ForwardingPosix;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A {@link Posix} for host memory whose {@code nth} discard ({@code MADV_DONTNEED} or {@code MADV_REMOVE}, counted
 * from 1) fails with {@code errno}, as the kernel would refuse it; every other call goes through. Give it to
 * {@code HostMemory.anonymous(posix, ...)} (or to the testkit's {@code ActorTree}).
 */
public final class DiscardFault extends ForwardingPosix {
    private final int nth;
    private final int errno;
    private final AtomicInteger discards = new AtomicInteger();

    public DiscardFault(Posix delegate, int nth, int errno) {
        super(delegate);
        if (nth < 1) {
            throw new IllegalArgumentException("the failing discard is counted from 1, not " + nth);
        }
        this.nth = nth;
        this.errno = errno;
    }

    /** Discards attempted so far, the failed one included. */
    public int discards() {
        return discards.get();
    }

    @Override
    public void madvise(long addr, long length, int advice) {
        if ((advice == Mman.MADV_DONTNEED || advice == Mman.MADV_REMOVE) && discards.incrementAndGet() == nth) {
            throw new NativeException("madvise(" + Mman.adviceName(advice) + ")", errno, "injected fault");
        }
        super.madvise(addr, length, advice);
    }

    @Override
    public void fallocate(int fd, int mode, long offset, long length) {
        // FALLOC_FL_PUNCH_HOLE: the discard of shared (memfd) memory.
        if ((mode & 0x02) != 0 && discards.incrementAndGet() == nth) {
            throw new NativeException("fallocate(FALLOC_FL_PUNCH_HOLE)", errno, "injected fault");
        }
        super.fallocate(fd, mode, offset, length);
    }
}
