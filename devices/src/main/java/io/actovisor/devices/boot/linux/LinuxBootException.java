package io.actovisor.devices.boot.linux;

/** A Linux kernel, initrd or command line that cannot be booted; the message names the file or value and limit. */
public final class LinuxBootException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public LinuxBootException(String message) {
        super(message);
    }

    public LinuxBootException(String message, Throwable cause) {
        super(message, cause);
    }
}
