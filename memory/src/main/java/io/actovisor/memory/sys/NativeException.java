package io.actovisor.memory.sys;

/**
 * A system call failed. The message reads like {@code madvise(MADV_DONTNEED) failed: EINVAL (22)}: the call with
 * its decisive argument, the errno name and its number.
 */
public class NativeException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    private final String call;
    private final int errno;

    public NativeException(String call, int errno) {
        super(call + " failed: " + Errno.name(errno) + " (" + errno + ")");
        this.call = call;
        this.errno = errno;
    }

    public NativeException(String call, int errno, String detail) {
        super(call + " failed: " + Errno.name(errno) + " (" + errno + "): " + detail);
        this.call = call;
        this.errno = errno;
    }

    /** The call as named in the message, e.g. {@code ioctl(KVM_RUN)}. */
    public String call() {
        return call;
    }

    /** The errno value the kernel returned. */
    public int errno() {
        return errno;
    }

    /** The symbolic errno, e.g. {@code EEXIST}. */
    public String errnoName() {
        return Errno.name(errno);
    }
}
