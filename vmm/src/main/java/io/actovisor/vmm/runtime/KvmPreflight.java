package io.actovisor.vmm.runtime;

import io.actovisor.kernel.kvm.Kvm;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.function.Supplier;

/**
 * Whether this host can run a KVM guest, asked before {@code run} allocates anything, and what to do when it
 * cannot. {@code ACTOVISOR_KVM=none} makes the check behave as if {@code /dev/kvm} were missing, so the path can
 * be tried on any machine; {@code native} and {@code emulated} (which the test suite uses to choose its KVM host)
 * leave it to the real probe.
 */
public final class KvmPreflight {
    /** The environment variable that can pretend {@code /dev/kvm} is missing. */
    public static final String ENV = "ACTOVISOR_KVM";

    private KvmPreflight() {
    }

    /** Why {@code run} cannot start a KVM guest here, as one message for the user; empty when it can. */
    public static Optional<String> problem(Map<String, String> env) {
        return problem(env, Kvm::unavailabilityCause);
    }

    static Optional<String> problem(Map<String, String> env, Supplier<Optional<String>> probe) {
        return cause(env, probe).map(KvmPreflight::message);
    }

    /**
     * Why KVM cannot run a guest here, as the probe (or the switch) says it; empty when it can.
     *
     * @throws IllegalArgumentException if {@code ACTOVISOR_KVM} has a value other than native, emulated or none
     */
    public static Optional<String> cause(Map<String, String> env) {
        return cause(env, Kvm::unavailabilityCause);
    }

    static Optional<String> cause(Map<String, String> env, Supplier<Optional<String>> probe) {
        String mode = env.getOrDefault(ENV, "native").trim().toLowerCase(Locale.ROOT);
        return switch (mode) {
            case "", "native", "emulated" -> probe.get();
            case "none" -> Optional.of("/dev/kvm treated as missing because " + ENV + "=none (ENOENT)");
            default -> throw new IllegalArgumentException(ENV + " = '" + env.get(ENV)
                    + "': expected native, emulated or none");
        };
    }

    /** The user's message for {@code cause}: what is missing, what to do, and what runs without KVM. */
    public static String message(String cause) {
        String todo;
        if (cause.contains("EACCES") || cause.contains("EPERM")) {
            todo = "you may not open /dev/kvm: join the kvm group (sudo usermod -aG kvm $USER, then log in again)";
        } else if (cause.contains("ENOENT") || cause.contains("ENXIO") || cause.contains("ENODEV")) {
            todo = "/dev/kvm is missing: load the KVM module (sudo modprobe kvm_intel, or kvm_amd); if the CPU "
                    + "shows no vmx or svm flag in /proc/cpuinfo and this machine is itself a VM, enable nested "
                    + "virtualization on its host";
        } else {
            todo = "KVM is not usable on this host";
        }
        return "this host cannot run a KVM guest: " + cause + ".\n" + todo + ".\n"
                + "Without KVM the scripted guest runs: set guest.kind = scripted, or auto (the default VM's "
                + "choice, which falls back to it by itself); ./actovisor coherence-demo needs no guest at all.";
    }
}
