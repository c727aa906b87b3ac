package io.actovisor.memory;

/** {@code /proc/self/pagemap} cannot tell the page frame number: the kernel hides PFNs without CAP_SYS_ADMIN. */
public final class PfnUnavailableException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public PfnUnavailableException(String message) {
        super(message);
    }
}
