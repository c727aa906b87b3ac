package io.actovisor.memory.sys;

import java.util.Optional;

/**
 * A {@link Posix} that forwards every call to another one: a decorator for the calls one wants to observe or fail.
 * Fault-injection tests override, for example, {@code madvise} to catch a discard of pinned memory at the moment it
 * happens (the testkit's {@code PinWatch}), or an {@code ioctl} to answer EINTR.
 */
public class ForwardingPosix implements Posix {
    protected final Posix delegate;

    public ForwardingPosix(Posix delegate) {
        this.delegate = delegate;
    }

    @Override
    public int open(String path, int flags) {
        return delegate.open(path, flags);
    }

    @Override
    public void close(int fd) {
        delegate.close(fd);
    }

    @Override
    public long ioctl(int fd, Ioctl request, long arg) {
        return delegate.ioctl(fd, request, arg);
    }

    @Override
    public long mmap(long addr, long length, int prot, int flags, int fd, long offset) {
        return delegate.mmap(addr, length, prot, flags, fd, offset);
    }

    @Override
    public void munmap(long addr, long length) {
        delegate.munmap(addr, length);
    }

    @Override
    public void madvise(long addr, long length, int advice) {
        delegate.madvise(addr, length, advice);
    }

    @Override
    public void mincore(long addr, long length, long vec) {
        delegate.mincore(addr, length, vec);
    }

    @Override
    public int memfdCreate(String name, int flags) {
        return delegate.memfdCreate(name, flags);
    }

    @Override
    public void ftruncate(int fd, long length) {
        delegate.ftruncate(fd, length);
    }

    @Override
    public void fallocate(int fd, int mode, long offset, long length) {
        delegate.fallocate(fd, mode, offset, length);
    }

    @Override
    public long pread(int fd, long buf, long count, long offset) {
        return delegate.pread(fd, buf, count, offset);
    }

    @Override
    public long pwrite(int fd, long buf, long count, long offset) {
        return delegate.pwrite(fd, buf, count, offset);
    }

    @Override
    public long read(int fd, long buf, long count) {
        return delegate.read(fd, buf, count);
    }

    @Override
    public long write(int fd, long buf, long count) {
        return delegate.write(fd, buf, count);
    }

    @Override
    public int eventfd(int initval, int flags) {
        return delegate.eventfd(initval, flags);
    }

    @Override
    public long syscall(String name, long number, long a1, long a2, long a3, long a4, long a5, long a6) {
        return delegate.syscall(name, number, a1, a2, a3, a4, a5, a6);
    }

    @Override
    public int getpid() {
        return delegate.getpid();
    }

    @Override
    public int gettid() {
        return delegate.gettid();
    }

    @Override
    public void tgkill(int tgid, int tid, int signal) {
        delegate.tgkill(tgid, tid, signal);
    }

    @Override
    public void installNoopSignalHandler(int signal) {
        delegate.installNoopSignalHandler(signal);
    }

    @Override
    public long pageSize() {
        return delegate.pageSize();
    }

    @Override
    public Optional<String> fdTarget(int fd) {
        return delegate.fdTarget(fd);
    }
}
