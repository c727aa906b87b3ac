package io.actovisor.memory.sys;

import java.util.Optional;

/**
 * The process's door to the kernel: every system call actovisor makes goes through this JNA-free interface, so
 * device code never sees JNA and tests can put a recording double in its place. Addresses are plain {@code long}s
 * (unsigned); structures live in {@link NativeBuffer}s and travel as their addresses.
 *
 * <p>Every method throws {@link NativeException} naming the call and errno when the kernel refuses.
 */
public interface Posix {
    /** The process's real libc binding. Throws {@link IllegalStateException} with the cause when JNA cannot load. */
    static Posix system() {
        return LibcPosix.instance();
    }

    /** Whether the native binding loaded on this machine. */
    static boolean isAvailable() {
        return LibcPosix.unavailabilityCause().isEmpty();
    }

    /** Why the native binding is not available, if it is not. */
    static Optional<String> unavailabilityCause() {
        return LibcPosix.unavailabilityCause();
    }

    int O_RDONLY = 0;
    int O_WRONLY = 1;
    int O_RDWR = 2;
    int O_CLOEXEC = 0x80000;
    int O_NONBLOCK = 0x800;

    /** open(2); the path is named in the error. */
    int open(String path, int flags);

    /** close(2). */
    void close(int fd);

    /** ioctl(2) with an integer or pointer argument; returns the non-negative result. */
    long ioctl(int fd, Ioctl request, long arg);

    /** mmap(2); returns the mapping's address. */
    long mmap(long addr, long length, int prot, int flags, int fd, long offset);

    /** munmap(2). */
    void munmap(long addr, long length);

    /** madvise(2); the advice is named in the error. */
    void madvise(long addr, long length, int advice);

    /** mincore(2) into {@code vec}, one byte per page. */
    void mincore(long addr, long length, long vec);

    /** memfd_create(2). */
    int memfdCreate(String name, int flags);

    /** ftruncate(2). */
    void ftruncate(int fd, long length);

    /** fallocate(2). */
    void fallocate(int fd, int mode, long offset, long length);

    /** pread(2); returns the bytes read. */
    long pread(int fd, long buf, long count, long offset);

    /** pwrite(2); returns the bytes written. */
    long pwrite(int fd, long buf, long count, long offset);

    /** read(2); returns the bytes read. */
    long read(int fd, long buf, long count);

    /** write(2); returns the bytes written. */
    long write(int fd, long buf, long count);

    /** eventfd(2). */
    int eventfd(int initval, int flags);

    /** A raw system call by number for calls libc has no wrapper for (io_uring); {@code name} is used in errors. */
    long syscall(String name, long number, long a1, long a2, long a3, long a4, long a5, long a6);

    /** getpid(2). */
    int getpid();

    /** gettid(2) of the calling thread. */
    int gettid();

    /** tgkill(2): send {@code signal} to one thread of a thread group. */
    void tgkill(int tgid, int tid, int signal);

    /**
     * Install a do-nothing handler for {@code signal} (without SA_RESTART), so that the signal interrupts a
     * blocking system call with EINTR instead of killing the process. Used to kick vCPU threads out of KVM_RUN.
     */
    void installNoopSignalHandler(int signal);

    /** sysconf(_SC_PAGESIZE). */
    long pageSize();

    /** The file a file descriptor refers to, as {@code /proc/self/fd/N} names it, or empty if it is not open. */
    Optional<String> fdTarget(int fd);
}
