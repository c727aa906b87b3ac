package io.actovisor.memory.sys;

import com.sun.jna.LastErrorException;
import com.sun.jna.Memory;
import com.sun.jna.Native;
import com.sun.jna.NativeLibrary;
import com.sun.jna.Pointer;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Optional;

/** The one JNA binding of libc (direct mapping); everything native in actovisor goes through it. */
final class LibcPosix implements Posix {
    private static final String CAUSE;
    private static final LibcPosix INSTANCE;

    static {
        String cause = null;
        LibcPosix instance = null;
        try {
            if (!System.getProperty("os.name", "").toLowerCase().contains("linux")
                    || !System.getProperty("os.arch", "").matches("amd64|x86_64")) {
                cause = "actovisor's native layer needs Linux on x86-64; this is "
                        + System.getProperty("os.name") + " on " + System.getProperty("os.arch");
            } else {
                Native.register(Libc.class, NativeLibrary.getInstance("c"));
                instance = new LibcPosix();
            }
        } catch (UnsatisfiedLinkError | RuntimeException e) {
            cause = "JNA could not bind libc: " + e;
        }
        CAUSE = cause;
        INSTANCE = instance;
    }

    private static final long SYS_GETTID = 186;
    private static final long SYS_TGKILL = 234;
    private static final int SC_PAGESIZE = 30;

    static LibcPosix instance() {
        if (INSTANCE == null) {
            throw new IllegalStateException(CAUSE);
        }
        return INSTANCE;
    }

    static Optional<String> unavailabilityCause() {
        return Optional.ofNullable(CAUSE);
    }

    private LibcPosix() {
    }

    /** libc through JNA direct mapping; registered once, in {@link LibcPosix}'s initializer. */
    static final class Libc {
        private Libc() {
        }

        static native int open(String path, int flags, int mode) throws LastErrorException;

        static native int close(int fd) throws LastErrorException;

        static native long ioctl(int fd, long request, long arg) throws LastErrorException;

        static native long mmap(long addr, long length, int prot, int flags, int fd, long offset)
                throws LastErrorException;

        static native int munmap(long addr, long length) throws LastErrorException;

        static native int madvise(long addr, long length, int advice) throws LastErrorException;

        static native int mincore(long addr, long length, long vec) throws LastErrorException;

        static native int memfd_create(String name, int flags) throws LastErrorException;

        static native int ftruncate(int fd, long length) throws LastErrorException;

        static native int fallocate(int fd, int mode, long offset, long length) throws LastErrorException;

        static native long pread(int fd, long buf, long count, long offset) throws LastErrorException;

        static native long pwrite(int fd, long buf, long count, long offset) throws LastErrorException;

        static native long read(int fd, long buf, long count) throws LastErrorException;

        static native long write(int fd, long buf, long count) throws LastErrorException;

        static native int eventfd(int initval, int flags) throws LastErrorException;

        static native long syscall(long number, long a1, long a2, long a3, long a4, long a5, long a6)
                throws LastErrorException;

        static native int getpid();

        static native long sysconf(int name);

        static native int sigaction(int signal, Pointer act, Pointer oldact) throws LastErrorException;
    }

    // --- Posix ---------------------------------------------------------------------------------------------

    @Override
    public int open(String path, int flags) {
        try {
            return Libc.open(path, flags | O_CLOEXEC, 0);
        } catch (LastErrorException e) {
            throw new NativeException("open(" + path + ")", e.getErrorCode());
        }
    }

    @Override
    public void close(int fd) {
        try {
            Libc.close(fd);
        } catch (LastErrorException e) {
            throw new NativeException("close(" + fd + ")", e.getErrorCode());
        }
    }

    @Override
    public long ioctl(int fd, Ioctl request, long arg) {
        try {
            return Libc.ioctl(fd, request.number(), arg);
        } catch (LastErrorException e) {
            throw new NativeException("ioctl(" + request.name() + ")", e.getErrorCode());
        }
    }

    @Override
    public long mmap(long addr, long length, int prot, int flags, int fd, long offset) {
        try {
            return Libc.mmap(addr, length, prot, flags, fd, offset);
        } catch (LastErrorException e) {
            throw new NativeException("mmap(" + length + " bytes)", e.getErrorCode());
        }
    }

    @Override
    public void munmap(long addr, long length) {
        try {
            Libc.munmap(addr, length);
        } catch (LastErrorException e) {
            throw new NativeException("munmap(0x" + Long.toHexString(addr) + ")", e.getErrorCode());
        }
    }

    @Override
    public void madvise(long addr, long length, int advice) {
        try {
            Libc.madvise(addr, length, advice);
        } catch (LastErrorException e) {
            throw new NativeException("madvise(" + Mman.adviceName(advice) + ")", e.getErrorCode());
        }
    }

    @Override
    public void mincore(long addr, long length, long vec) {
        try {
            Libc.mincore(addr, length, vec);
        } catch (LastErrorException e) {
            throw new NativeException("mincore(0x" + Long.toHexString(addr) + ")", e.getErrorCode());
        }
    }

    @Override
    public int memfdCreate(String name, int flags) {
        try {
            return Libc.memfd_create(name, flags);
        } catch (LastErrorException e) {
            throw new NativeException("memfd_create(" + name + ")", e.getErrorCode());
        }
    }

    @Override
    public void ftruncate(int fd, long length) {
        try {
            Libc.ftruncate(fd, length);
        } catch (LastErrorException e) {
            throw new NativeException("ftruncate(" + length + ")", e.getErrorCode());
        }
    }

    @Override
    public void fallocate(int fd, int mode, long offset, long length) {
        try {
            Libc.fallocate(fd, mode, offset, length);
        } catch (LastErrorException e) {
            String what = (mode & Mman.FALLOC_FL_PUNCH_HOLE) != 0 ? "FALLOC_FL_PUNCH_HOLE" : "mode " + mode;
            throw new NativeException("fallocate(" + what + ")", e.getErrorCode());
        }
    }

    @Override
    public long pread(int fd, long buf, long count, long offset) {
        try {
            return Libc.pread(fd, buf, count, offset);
        } catch (LastErrorException e) {
            throw new NativeException("pread(" + fd + ")", e.getErrorCode());
        }
    }

    @Override
    public long pwrite(int fd, long buf, long count, long offset) {
        try {
            return Libc.pwrite(fd, buf, count, offset);
        } catch (LastErrorException e) {
            throw new NativeException("pwrite(" + fd + ")", e.getErrorCode());
        }
    }

    @Override
    public long read(int fd, long buf, long count) {
        try {
            return Libc.read(fd, buf, count);
        } catch (LastErrorException e) {
            throw new NativeException("read(" + fd + ")", e.getErrorCode());
        }
    }

    @Override
    public long write(int fd, long buf, long count) {
        try {
            return Libc.write(fd, buf, count);
        } catch (LastErrorException e) {
            throw new NativeException("write(" + fd + ")", e.getErrorCode());
        }
    }

    @Override
    public int eventfd(int initval, int flags) {
        try {
            return Libc.eventfd(initval, flags);
        } catch (LastErrorException e) {
            throw new NativeException("eventfd", e.getErrorCode());
        }
    }

    @Override
    public long syscall(String name, long number, long a1, long a2, long a3, long a4, long a5, long a6) {
        try {
            return Libc.syscall(number, a1, a2, a3, a4, a5, a6);
        } catch (LastErrorException e) {
            throw new NativeException(name, e.getErrorCode());
        }
    }

    @Override
    public int getpid() {
        return Libc.getpid();
    }

    @Override
    public int gettid() {
        return (int) syscall("gettid", SYS_GETTID, 0, 0, 0, 0, 0, 0);
    }

    @Override
    public void tgkill(int tgid, int tid, int signal) {
        syscall("tgkill(" + tid + ", " + signal + ")", SYS_TGKILL, tgid, tid, signal, 0, 0, 0);
    }

    // One entry per signal whose handler is installed; installation happens once.
    private static final java.util.Map<Integer, Object> HANDLERS = new java.util.concurrent.ConcurrentHashMap<>();

    @Override
    public void installNoopSignalHandler(int signal) {
        HANDLERS.computeIfAbsent(signal, s -> {
            // glibc's struct sigaction on x86-64: handler (8), mask (128), flags (4 + pad), restorer (8); glibc
            // fills in SA_RESTORER itself. No SA_RESTART: the interrupted ioctl must return EINTR. The handler is
            // libc's own getpid, which is async-signal-safe, ignores its argument and returns at once, so no JVM
            // code ever runs in signal context.
            Memory act = new Memory(Signals.SIGACTION_SIZE);
            act.clear();
            act.setLong(Signals.SIGACTION_HANDLER, Pointer.nativeValue(NativeLibrary.getInstance("c")
                    .getFunction("getpid")));
            try {
                Libc.sigaction(signal, act, null);
            } catch (LastErrorException e) {
                throw new NativeException("sigaction(" + signal + ")", e.getErrorCode());
            }
            return act;
        });
    }

    @Override
    public long pageSize() {
        return Libc.sysconf(SC_PAGESIZE);
    }

    @Override
    public Optional<String> fdTarget(int fd) {
        try {
            return Optional.of(Files.readSymbolicLink(Path.of("/proc/self/fd/" + fd)).toString());
        } catch (IOException e) {
            return Optional.empty();
        }
    }
}
