package io.actovisor.kernel.kvm;

import io.actovisor.memory.sys.Errno;
import io.actovisor.memory.sys.Mman;
import io.actovisor.memory.sys.NativeBuffer;
import io.actovisor.memory.sys.NativeException;
import io.actovisor.memory.sys.Posix;

/**
 * One KVM vCPU: owns its fd and the mapped {@code struct kvm_run}. {@link #run()} blocks in {@code KVM_RUN} for as
 * long as the guest runs, so it belongs on a dedicated thread; {@link #requestExit()} may be called from any other
 * thread to make it return promptly ({@code immediate_exit} plus a signal to the vCPU thread).
 */
public final class KvmVcpu implements AutoCloseable {
    /** The signal that kicks a vCPU thread out of KVM_RUN: a real-time signal the JVM does not use. */
    public static final int KICK_SIGNAL = 40;

    private final Posix posix;
    private final int id;
    private final int fd;
    private final long runAddress;
    private final long runSize;
    private final NativeBuffer run;
    private volatile int thread;
    private volatile boolean closed;

    private KvmVcpu(Posix posix, int id, int fd, long runAddress, long runSize) {
        this.posix = posix;
        this.id = id;
        this.fd = fd;
        this.runAddress = runAddress;
        this.runSize = runSize;
        this.run = NativeBuffer.view(runAddress, runSize);
    }

    static KvmVcpu map(Posix posix, int id, int fd, long mmapSize) {
        try {
            long address = posix.mmap(0, mmapSize, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_SHARED, fd, 0);
            posix.installNoopSignalHandler(KICK_SIGNAL);
            return new KvmVcpu(posix, id, fd, address, mmapSize);
        } catch (RuntimeException e) {
            posix.close(fd);
            throw e;
        }
    }

    public int id() {
        return id;
    }

    /** KVM_SET_CPUID2. */
    public void setCpuid(CpuidEntries entries) {
        byte[] bytes = entries.bytes();
        try (NativeBuffer buf = NativeBuffer.allocate(KvmAbi.KVM_CPUID2_SIZE + bytes.length)) {
            buf.putInt(KvmAbi.CPUID2_NENT, entries.count()).putBytes(KvmAbi.CPUID2_ENTRIES, bytes);
            posix.ioctl(fd, KvmAbi.KVM_SET_CPUID2, buf.address());
        }
    }

    /**
     * KVM_SET_MSRS: set each model-specific register {@code index -> value}; all or an error naming how many the
     * kernel took.
     */
    public void setMsrs(java.util.Map<Integer, Long> msrs) {
        try (NativeBuffer buf = NativeBuffer.allocate(KvmAbi.KVM_MSRS_SIZE
                + msrs.size() * KvmAbi.KVM_MSR_ENTRY_SIZE)) {
            buf.putInt(KvmAbi.MSRS_NMSRS, msrs.size());
            int i = 0;
            for (var e : msrs.entrySet()) {
                long at = KvmAbi.MSRS_ENTRIES + (long) i++ * KvmAbi.KVM_MSR_ENTRY_SIZE;
                buf.putInt(at + KvmAbi.MSR_ENTRY_INDEX, e.getKey()).putLong(at + KvmAbi.MSR_ENTRY_DATA, e.getValue());
            }
            long set = posix.ioctl(fd, KvmAbi.KVM_SET_MSRS, buf.address());
            if (set != msrs.size()) {
                throw new KvmException("KVM_SET_MSRS set " + set + " of " + msrs.size() + " MSRs " + msrs.keySet());
            }
        }
    }

    /** KVM_GET_REGS. */
    public Registers registers() {
        try (NativeBuffer buf = NativeBuffer.allocate(KvmAbi.KVM_REGS_SIZE)) {
            posix.ioctl(fd, KvmAbi.KVM_GET_REGS, buf.address());
            long[] values = new long[Registers.NAMES.length];
            for (int i = 0; i < values.length; i++) {
                values[i] = buf.getLong(8L * i);
            }
            return new Registers(values);
        }
    }

    /** KVM_SET_REGS. */
    public void setRegisters(Registers registers) {
        try (NativeBuffer buf = NativeBuffer.allocate(KvmAbi.KVM_REGS_SIZE)) {
            long[] values = registers.values();
            for (int i = 0; i < values.length; i++) {
                buf.putLong(8L * i, values[i]);
            }
            posix.ioctl(fd, KvmAbi.KVM_SET_REGS, buf.address());
        }
    }

    /** KVM_GET_SREGS into a buffer the caller edits and passes to {@link #setSpecialRegisters}. */
    public NativeBuffer specialRegisters() {
        NativeBuffer buf = NativeBuffer.allocate(KvmAbi.KVM_SREGS_SIZE);
        try {
            posix.ioctl(fd, KvmAbi.KVM_GET_SREGS, buf.address());
            return buf;
        } catch (RuntimeException e) {
            buf.close();
            throw e;
        }
    }

    /** KVM_SET_SREGS. */
    public void setSpecialRegisters(NativeBuffer sregs) {
        posix.ioctl(fd, KvmAbi.KVM_SET_SREGS, sregs.address());
    }

    /**
     * Enter the guest until it exits. Returns {@link VcpuExit.Interrupted} when {@link #requestExit()} (or any
     * signal) ended the run; the exit request stays set until {@link #clearExitRequest()}.
     */
    public VcpuExit run() {
        thread = posix.gettid();
        try {
            posix.ioctl(fd, KvmAbi.KVM_RUN, 0);
        } catch (NativeException e) {
            if (e.errno() == Errno.EINTR || e.errno() == Errno.EAGAIN) {
                return new VcpuExit.Interrupted();
            }
            throw e;
        }
        int reason = run.getInt(KvmAbi.RUN_EXIT_REASON);
        if (reason == KvmAbi.KVM_EXIT_IO) {
            int direction = run.getByte(KvmAbi.RUN_IO_DIRECTION);
            int size = run.getByte(KvmAbi.RUN_IO_SIZE);
            int port = run.getShort(KvmAbi.RUN_IO_PORT) & 0xffff;
            long dataOffset = run.getLong(KvmAbi.RUN_IO_DATA_OFFSET);
            boolean in = direction == KvmAbi.KVM_EXIT_IO_IN;
            long data = in ? 0 : readSized(dataOffset, size);
            return new VcpuExit.Io(port, size, in, data);
        }
        if (reason == KvmAbi.KVM_EXIT_MMIO) {
            long address = run.getLong(KvmAbi.RUN_MMIO_PHYS_ADDR);
            int length = run.getInt(KvmAbi.RUN_MMIO_LEN);
            boolean write = run.getByte(KvmAbi.RUN_MMIO_IS_WRITE) != 0;
            return new VcpuExit.Mmio(address, length, write, write ? readSized(KvmAbi.RUN_MMIO_DATA, length) : 0);
        }
        if (reason == KvmAbi.KVM_EXIT_INTR) {
            return new VcpuExit.Interrupted();
        }
        Registers registers = registers();
        if (reason == KvmAbi.KVM_EXIT_HLT) {
            return new VcpuExit.Hlt(registers);
        }
        if (reason == KvmAbi.KVM_EXIT_SHUTDOWN) {
            return new VcpuExit.Shutdown(registers);
        }
        if (reason == KvmAbi.KVM_EXIT_INTERNAL_ERROR) {
            return new VcpuExit.InternalError(run.getInt(KvmAbi.RUN_INTERNAL_SUBERROR), registers);
        }
        if (reason == KvmAbi.KVM_EXIT_FAIL_ENTRY) {
            return new VcpuExit.FailEntry(run.getLong(KvmAbi.RUN_FAIL_ENTRY_REASON), registers);
        }
        return new VcpuExit.Unknown(reason, registers);
    }

    private long readSized(long offset, int size) {
        return switch (size) {
            case 1 -> run.getByte(offset) & 0xffL;
            case 2 -> run.getShort(offset) & 0xffffL;
            case 4 -> run.getInt(offset) & 0xffff_ffffL;
            default -> run.getLong(offset);
        };
    }

    private void writeSized(long offset, int size, long value) {
        switch (size) {
            case 1 -> run.putByte(offset, (byte) value);
            case 2 -> run.putShort(offset, (short) value);
            case 4 -> run.putInt(offset, (int) value);
            default -> run.putLong(offset, value);
        }
    }

    /** The value a port read returns to the guest, written where KVM expects it before the next run. */
    public void completeIn(VcpuExit.Io io, long value) {
        writeSized(run.getLong(KvmAbi.RUN_IO_DATA_OFFSET), io.size(), value);
    }

    /** The value an MMIO read returns to the guest. */
    public void completeMmioRead(VcpuExit.Mmio mmio, long value) {
        writeSized(KvmAbi.RUN_MMIO_DATA, mmio.size(), value);
    }

    /** Make the current or next {@link #run()} return promptly; callable from any thread. */
    public void requestExit() {
        if (closed) {
            return;
        }
        run.putByte(KvmAbi.RUN_IMMEDIATE_EXIT, (byte) 1);
        int tid = thread;
        if (tid != 0) {
            try {
                posix.tgkill(posix.getpid(), tid, KICK_SIGNAL);
            } catch (NativeException e) {
                // The thread is gone (ESRCH): nothing runs the vCPU, so nothing needs kicking.
            }
        }
    }

    /** Whether an exit was requested and not yet cleared. */
    public boolean exitRequested() {
        return !closed && run.getByte(KvmAbi.RUN_IMMEDIATE_EXIT) != 0;
    }

    /** Allow {@link #run()} to enter the guest again. */
    public void clearExitRequest() {
        run.putByte(KvmAbi.RUN_IMMEDIATE_EXIT, (byte) 0);
    }

    /** Unmap kvm_run and close the vCPU fd. Idempotent. */
    @Override
    public void close() {
        if (!closed) {
            closed = true;
            posix.munmap(runAddress, runSize);
            posix.close(fd);
        }
    }
}
