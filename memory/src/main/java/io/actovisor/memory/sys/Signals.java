package io.actovisor.memory.sys;

/**
 * glibc's {@code struct sigaction} on Linux x86-64 as {@link Posix#installNoopSignalHandler} fills it in: the handler
 * at offset 0, then a 128-byte signal mask, then the flags (left 0: no {@code SA_RESTART}, so a signal makes an
 * interrupted system call return {@code EINTR}), then the restorer, which glibc fills in itself. A compiled probe in
 * the devices tests checks these numbers against {@code <signal.h>}.
 */
public final class Signals {
    /** {@code sizeof(struct sigaction)}. */
    public static final int SIGACTION_SIZE = 152;
    /** {@code offsetof(struct sigaction, sa_handler)}. */
    public static final int SIGACTION_HANDLER = 0;
    /** {@code offsetof(struct sigaction, sa_flags)}. */
    public static final int SIGACTION_FLAGS = 136;

    private Signals() {
    }
}
