package io.actovisor.kernel.uring;

import static io.actovisor.kernel.uring.IoUringAbi.*;

import io.actovisor.memory.sys.Errno;
import io.actovisor.memory.sys.Mman;
import io.actovisor.memory.sys.NativeBuffer;
import io.actovisor.memory.sys.NativeException;
import io.actovisor.memory.sys.Posix;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Optional;

/**
 * One io_uring instance, through raw system calls (no liburing): the SQ and CQ rings and the SQE array mapped into
 * this process, a sparse table of fixed buffers that can be filled and emptied slot by slot, and synchronous
 * {@code READ_FIXED} / {@code WRITE_FIXED}. Registering a buffer takes a long-term pin on its pages
 * ({@code FOLL_PIN | FOLL_LONGTERM}), the same pin VFIO's type1 driver takes; a fixed read or write then reaches
 * the pinned pages, whatever the process's page tables say now.
 *
 * <p>Single owner, not thread-safe; {@link #close()} unregisters every buffer (unpins), unmaps the rings and
 * closes the ring fd, idempotently.
 */
public final class IoUring implements AutoCloseable {
    private final Posix posix;
    private final int fd;
    private final long ringAddress;
    private final long ringSize;
    private final long sqesAddress;
    private final long sqesSize;
    private final NativeBuffer ring;
    private final NativeBuffer sqes;
    private final int sqHead;
    private final int sqTail;
    private final int sqMask;
    private final int sqArray;
    private final int cqHead;
    private final int cqTail;
    private final int cqMask;
    private final int cqes;
    private int bufferSlots;
    private long nextUserData = 1;
    private boolean closed;

    private IoUring(Posix posix, int fd, long ringAddress, long ringSize, long sqesAddress, long sqesSize,
            NativeBuffer params) {
        this.posix = posix;
        this.fd = fd;
        this.ringAddress = ringAddress;
        this.ringSize = ringSize;
        this.sqesAddress = sqesAddress;
        this.sqesSize = sqesSize;
        this.ring = NativeBuffer.view(ringAddress, ringSize);
        this.sqes = NativeBuffer.view(sqesAddress, sqesSize);
        this.sqHead = params.getInt(PARAMS_SQ_OFF + SQ_OFF_HEAD);
        this.sqTail = params.getInt(PARAMS_SQ_OFF + SQ_OFF_TAIL);
        this.sqMask = ring.getInt(params.getInt(PARAMS_SQ_OFF + SQ_OFF_RING_MASK));
        this.sqArray = params.getInt(PARAMS_SQ_OFF + SQ_OFF_ARRAY);
        this.cqHead = params.getInt(PARAMS_CQ_OFF + CQ_OFF_HEAD);
        this.cqTail = params.getInt(PARAMS_CQ_OFF + CQ_OFF_TAIL);
        this.cqMask = ring.getInt(params.getInt(PARAMS_CQ_OFF + CQ_OFF_RING_MASK));
        this.cqes = params.getInt(PARAMS_CQ_OFF + CQ_OFF_CQES);
    }

    /** A ring with {@code entries} submission entries on this host. */
    public static IoUring open(int entries) {
        return open(Posix.system(), entries);
    }

    /** A ring with {@code entries} submission entries, through {@code posix}. */
    public static IoUring open(Posix posix, int entries) {
        int fd;
        long ringAddress = 0;
        long ringSize = 0;
        try (NativeBuffer params = NativeBuffer.allocate(PARAMS_SIZE)) {
            fd = (int) posix.syscall("io_uring_setup", SYS_IO_URING_SETUP, entries, params.address(), 0, 0, 0, 0);
            try {
                if ((params.getInt(PARAMS_FEATURES) & FEAT_SINGLE_MMAP) == 0) {
                    throw new NativeException("io_uring_setup (kernel without IORING_FEAT_SINGLE_MMAP)",
                            Errno.ENOSYS);
                }
                int sqEntries = params.getInt(PARAMS_SQ_ENTRIES);
                int cqEntries = params.getInt(PARAMS_CQ_ENTRIES);
                long sqRingSize = params.getInt(PARAMS_SQ_OFF + SQ_OFF_ARRAY) + 4L * sqEntries;
                long cqRingSize = params.getInt(PARAMS_CQ_OFF + CQ_OFF_CQES) + (long) CQE_SIZE * cqEntries;
                ringSize = Math.max(sqRingSize, cqRingSize);
                ringAddress = posix.mmap(0, ringSize, Mman.PROT_READ | Mman.PROT_WRITE,
                        Mman.MAP_SHARED | Mman.MAP_POPULATE, fd, OFF_SQ_RING);
                long sqesSize = (long) SQE_SIZE * sqEntries;
                long sqesAddress;
                try {
                    sqesAddress = posix.mmap(0, sqesSize, Mman.PROT_READ | Mman.PROT_WRITE,
                            Mman.MAP_SHARED | Mman.MAP_POPULATE, fd, OFF_SQES);
                } catch (RuntimeException e) {
                    posix.munmap(ringAddress, ringSize);
                    throw e;
                }
                return new IoUring(posix, fd, ringAddress, ringSize, sqesAddress, sqesSize, params);
            } catch (RuntimeException e) {
                posix.close(fd);
                throw e;
            }
        }
    }

    /** Whether io_uring works here; see {@link #unavailabilityCause()}. */
    public static boolean isAvailable() {
        return unavailabilityCause().isEmpty();
    }

    /** Why io_uring cannot be used on this host, if it cannot. */
    public static Optional<String> unavailabilityCause() {
        if (!Posix.isAvailable()) {
            return Posix.unavailabilityCause();
        }
        Path sysctl = Path.of("/proc/sys/kernel/io_uring_disabled");
        try {
            if (Files.exists(sysctl) && !Files.readString(sysctl).trim().equals("0")) {
                return Optional.of("io_uring is disabled by kernel.io_uring_disabled = "
                        + Files.readString(sysctl).trim());
            }
        } catch (java.io.IOException e) {
            // An unreadable sysctl tells nothing; the setup call below does.
        }
        try (IoUring probe = open(1)) {
            return Optional.empty();
        } catch (NativeException e) {
            return Optional.of("io_uring_setup failed: " + e.getMessage());
        }
    }

    /** Create an empty table of {@code slots} fixed-buffer slots (no page is pinned yet). */
    public void registerSparseBuffers(int slots) {
        ensureOpen();
        if (slots < 1 || slots > MAX_REGISTERED_BUFFERS) {
            throw new IllegalArgumentException("fixed-buffer slots must be between 1 and " + MAX_REGISTERED_BUFFERS
                    + ", was " + slots);
        }
        try (NativeBuffer reg = NativeBuffer.allocate(RSRC_REGISTER_SIZE)) {
            reg.putInt(RSRC_REGISTER_NR, slots).putInt(RSRC_REGISTER_FLAGS, RSRC_REGISTER_SPARSE);
            posix.syscall("io_uring_register(IORING_REGISTER_BUFFERS2)", SYS_IO_URING_REGISTER, fd,
                    REGISTER_BUFFERS2, reg.address(), RSRC_REGISTER_SIZE, 0, 0);
        }
        bufferSlots = slots;
    }

    /** Slots in the fixed-buffer table. */
    public int bufferSlots() {
        return bufferSlots;
    }

    /** Pin {@code length} bytes at {@code address} as fixed buffer {@code slot} (at most 1 GiB). */
    public void setBuffer(int slot, long address, long length) {
        updateBuffer(slot, address, length);
    }

    /** Empty fixed-buffer {@code slot}, unpinning its pages. */
    public void clearBuffer(int slot) {
        updateBuffer(slot, 0, 0);
    }

    private void updateBuffer(int slot, long address, long length) {
        ensureOpen();
        if (slot < 0 || slot >= bufferSlots) {
            throw new IllegalArgumentException("fixed-buffer slot " + slot + " is outside the table of "
                    + bufferSlots);
        }
        try (NativeBuffer iov = NativeBuffer.allocate(IOVEC_SIZE);
                NativeBuffer update = NativeBuffer.allocate(RSRC_UPDATE2_SIZE)) {
            iov.putLong(0, address).putLong(8, length);
            update.putInt(RSRC_UPDATE2_OFFSET, slot).putLong(RSRC_UPDATE2_DATA, iov.address())
                    .putInt(RSRC_UPDATE2_NR, 1);
            posix.syscall("io_uring_register(IORING_REGISTER_BUFFERS_UPDATE, slot " + slot + ")",
                    SYS_IO_URING_REGISTER, fd, REGISTER_BUFFERS_UPDATE, update.address(), RSRC_UPDATE2_SIZE, 0, 0);
        }
    }

    /** Unregister the whole fixed-buffer table, unpinning everything in it. */
    public void unregisterBuffers() {
        ensureOpen();
        if (bufferSlots > 0) {
            posix.syscall("io_uring_register(IORING_UNREGISTER_BUFFERS)", SYS_IO_URING_REGISTER, fd,
                    UNREGISTER_BUFFERS, 0, 0, 0, 0);
            bufferSlots = 0;
        }
    }

    /**
     * {@code IORING_OP_READ_FIXED}: read {@code length} bytes of file {@code fileFd} at {@code fileOffset} into
     * fixed buffer {@code slot} at {@code address} (inside that buffer). Returns the bytes read.
     */
    public int readFixed(int fileFd, long fileOffset, int slot, long address, int length) {
        return submitAndWait(OP_READ_FIXED, fileFd, fileOffset, slot, address, length);
    }

    /** {@code IORING_OP_WRITE_FIXED}: write {@code length} bytes of fixed buffer {@code slot} from {@code address}. */
    public int writeFixed(int fileFd, long fileOffset, int slot, long address, int length) {
        return submitAndWait(OP_WRITE_FIXED, fileFd, fileOffset, slot, address, length);
    }

    private int submitAndWait(int opcode, int fileFd, long fileOffset, int slot, long address, int length) {
        ensureOpen();
        int tail = ring.getIntAcquire(sqTail);
        int index = tail & sqMask;
        long sqe = (long) index * SQE_SIZE;
        long userData = nextUserData++;
        sqes.clear(sqe, SQE_SIZE);
        sqes.putByte(sqe + SQE_OPCODE, (byte) opcode).putInt(sqe + SQE_FD, fileFd).putLong(sqe + SQE_OFF, fileOffset)
                .putLong(sqe + SQE_ADDR, address).putInt(sqe + SQE_LEN, length)
                .putLong(sqe + SQE_USER_DATA, userData).putShort(sqe + SQE_BUF_INDEX, (short) slot);
        ring.putInt(sqArray + 4L * index, index);
        ring.putIntRelease(sqTail, tail + 1);
        String call = (opcode == OP_READ_FIXED ? "IORING_OP_READ_FIXED" : "IORING_OP_WRITE_FIXED") + " (slot "
                + slot + ")";
        int toSubmit = 1;
        while (true) {
            try {
                posix.syscall("io_uring_enter(" + call + ")", SYS_IO_URING_ENTER, fd, toSubmit, 1, ENTER_GETEVENTS,
                        0, 0);
                break;
            } catch (NativeException e) {
                if (e.errno() != Errno.EINTR) {
                    throw e;
                }
                // A signal interrupted the wait; the entry was consumed if the SQ head moved past it.
                toSubmit = ring.getIntAcquire(sqHead) == tail + 1 ? 0 : 1;
            }
        }
        int head = ring.getIntAcquire(cqHead);
        int cqTailNow = ring.getIntAcquire(cqTail);
        if (head == cqTailNow) {
            throw new NativeException("io_uring_enter(" + call + ") returned without a completion", Errno.EAGAIN);
        }
        long cqe = cqes + (long) (head & cqMask) * CQE_SIZE;
        long doneData = ring.getLong(cqe + CQE_USER_DATA);
        int res = ring.getInt(cqe + CQE_RES);
        ring.putIntRelease(cqHead, head + 1);
        if (doneData != userData) {
            throw new IllegalStateException("io_uring completion for request " + doneData + " while waiting for "
                    + userData);
        }
        if (res < 0) {
            throw new NativeException(call, -res);
        }
        return res;
    }

    /** The ring's fd, for diagnostics. */
    public int fd() {
        return fd;
    }

    private void ensureOpen() {
        if (closed) {
            throw new IllegalStateException("the io_uring instance is closed");
        }
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        posix.munmap(sqesAddress, sqesSize);
        posix.munmap(ringAddress, ringSize);
        // Closing the ring fd drops its fixed-buffer table and with it every pin.
        posix.close(fd);
        bufferSlots = 0;
    }
}
