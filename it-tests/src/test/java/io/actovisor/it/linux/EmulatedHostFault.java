package io.actovisor.it.linux;

import io.actovisor.memory.AddressRange;
import java.util.Optional;

/**
 * A stalled Linux guest whose registers are the emulated KVM host's own: its rip is the host kernel's
 * {@code __svm_vcpu_run} (kvm_amd's world switch, at the instruction after its VMRUN) and its CR3 lies outside the
 * guest's RAM. Only the emulated host's nested SVM (QEMU TCG emulating SVM for the host's KVM) can put them there:
 * on some #VMEXIT it stores the host's state into the guest's VMCB, and the host's KVM resumes the guest with it
 * (docs/linux-guest.md, "Known problem"). Nothing actovisor writes reaches those registers, so this is a fault of the
 * machine under the test, not a finding of the test; {@link EmulatedHostFaultRetry} runs the test again on a fresh VM.
 */
final class EmulatedHostFault extends AssertionError {
    /** The host kernel's function whose VMRUN enters the guest (arch/x86/kvm/svm/vmenter.S). */
    static final String WORLD_SWITCH = "__svm_vcpu_run";
    private static Optional<AddressRange> hostWorldSwitch;

    EmulatedHostFault(String message) {
        super(message);
    }

    /**
     * The addresses of the running kernel's {@link #WORLD_SWITCH} of kvm_amd (up to the next text symbol), from
     * its {@code /proc/kallsyms} (in the emulated KVM host: the host's), read once per JVM; empty where it is not
     * there or its addresses are hidden.
     */
    static synchronized Optional<AddressRange> hostWorldSwitch() {
        if (hostWorldSwitch == null) {
            hostWorldSwitch = GuestSymbols.ofRunningKernel().extent(WORLD_SWITCH, "kvm_amd");
        }
        return hostWorldSwitch;
    }

    /**
     * What proves a leak of the host's state, if {@code rip} and {@code cr3} (a paused vCPU's) show one: {@code rip}
     * inside the host's {@link #WORLD_SWITCH} ({@code worldSwitch}, as {@link #hostWorldSwitch} gives it) and
     * {@code cr3} at or above {@code ramBytes}, where the guest has no RAM.
     */
    static Optional<String> diagnose(long rip, long cr3, long ramBytes, Optional<AddressRange> worldSwitch) {
        long root = cr3 & ~0xfffL;
        if (Long.compareUnsigned(root, ramBytes) < 0) {
            return Optional.empty();
        }
        return worldSwitch.filter(w -> w.contains(rip))
                .map(w -> "the guest's rip 0x" + Long.toHexString(rip) + " is the emulated KVM host's own "
                        + WORLD_SWITCH + "+0x" + Long.toHexString(rip - w.base()) + " [kvm_amd] and its CR3 0x"
                        + Long.toHexString(cr3) + " lies outside the guest's " + (ramBytes >> 20) + " MiB of RAM: "
                        + "the emulated host's nested SVM (QEMU TCG) stored the host's own state in the guest's VMCB");
    }

    /** The throwable itself or a cause of it that is an {@code EmulatedHostFault}, if any. */
    static Optional<EmulatedHostFault> in(Throwable t) {
        for (Throwable c = t; c != null; c = c.getCause()) {
            if (c instanceof EmulatedHostFault f) {
                return Optional.of(f);
            }
        }
        return Optional.empty();
    }
}
