package io.actovisor.vmm.runtime;

import io.actovisor.config.GuestKind;
import java.util.Map;
import java.util.Optional;

/**
 * Which guest a VM definition's {@code guest.kind} runs on this host: {@code auto} is the firmware guest where KVM
 * works, else the scripted guest; {@code firmware} and {@code linux} without KVM are refused with the reason. The environment variable
 * {@code ACTOVISOR_KVM=none} makes actovisor treat the host as one without {@code /dev/kvm}.
 *
 * @param kind         {@link GuestKind#FIRMWARE}, {@link GuestKind#SCRIPTED} or {@link GuestKind#LINUX}
 * @param announcement one line saying which guest runs and why
 */
public record GuestChoice(GuestKind kind, String announcement) {
    /** The environment variable that, set to {@code none}, hides /dev/kvm from actovisor. */
    public static final String KVM_ENV = "ACTOVISOR_KVM";

    /** Why KVM cannot run a guest here, if it cannot (honouring {@code ACTOVISOR_KVM=none}). */
    public static Optional<String> kvmUnavailability() {
        return kvmUnavailability(System.getenv());
    }

    static Optional<String> kvmUnavailability(Map<String, String> environment) {
        return KvmPreflight.cause(environment);
    }

    /**
     * The guest {@code requested} runs when KVM is unavailable for {@code kvmUnavailable} (empty: KVM works).
     *
     * @throws GuestUnavailableException when the definition asks for a guest this host cannot run
     */
    public static GuestChoice choose(GuestKind requested, Optional<String> kvmUnavailable) {
        return switch (requested) {
            case AUTO -> kvmUnavailable.isEmpty()
                    ? new GuestChoice(GuestKind.FIRMWARE, "guest.kind = auto: running the firmware guest on KVM")
                    : new GuestChoice(GuestKind.SCRIPTED, "guest.kind = auto: running the scripted guest, because "
                            + "KVM is unavailable (" + kvmUnavailable.get() + ")");
            case FIRMWARE -> {
                if (kvmUnavailable.isPresent()) {
                    throw new GuestUnavailableException("guest.kind = firmware needs KVM, which is unavailable: "
                            + kvmUnavailable.get() + "; set guest.kind = scripted (or auto) to run without KVM");
                }
                yield new GuestChoice(GuestKind.FIRMWARE, "guest.kind = firmware: running the firmware guest on KVM");
            }
            case SCRIPTED -> new GuestChoice(GuestKind.SCRIPTED,
                    "guest.kind = scripted: running the scripted guest (no KVM)");
            case LINUX -> {
                if (kvmUnavailable.isPresent()) {
                    throw new GuestUnavailableException("guest.kind = linux needs KVM, which is unavailable: "
                            + kvmUnavailable.get() + "; set guest.kind = scripted (or auto) to run without KVM");
                }
                yield new GuestChoice(GuestKind.LINUX, "guest.kind = linux: running a Linux kernel on KVM");
            }
        };
    }

    /** A VM definition asks for a guest this host or build cannot run; the message says why and what to use. */
    public static final class GuestUnavailableException extends IllegalArgumentException {
        private static final long serialVersionUID = 1L;

        public GuestUnavailableException(String message) {
            super(message);
        }
    }
}
