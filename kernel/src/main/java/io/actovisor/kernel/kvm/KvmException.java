package io.actovisor.kernel.kvm;

/** KVM cannot do what was asked: missing capability, wrong API version, bad guest setup. Native errors stay {@code NativeException}s. */
public class KvmException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public KvmException(String message) {
        super(message);
    }

    public KvmException(String message, Throwable cause) {
        super(message, cause);
    }
}
