package io.actovisor.vmm.cli;

/** The exit codes of every {@code ./actovisor} command (the README's table). */
public final class ExitCode {
    /** The command did what it was asked. */
    public static final int OK = 0;
    /** The operation failed: the VMM refused, no VMM answered, the VM failed to start. */
    public static final int FAILED = 1;
    /** Bad usage (unknown command or option, an invalid VM definition) or this host cannot run it (no KVM). */
    public static final int USAGE = 2;

    private ExitCode() {
    }
}
