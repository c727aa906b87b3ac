package io.actovisor.it.linux;

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
    /** kvm_amd's {@code __svm_vcpu_run} is about 0x210 bytes long; a rip further past the symbol is something else. */
    private static final long WORLD_SWITCH_SIZE = 0x400;

    EmulatedHostFault(String message) {
        super(message);
    }

    /**
     * What proves a leak of the host's state, if {@code rip} and {@code cr3} (a paused vCPU's) show one: {@code rip}
     * inside the host's {@link #WORLD_SWITCH} (named by {@code host}, the running kernel's symbols) and {@code cr3}
     * at or above {@code ramBytes}, where the guest has no RAM.
     */
    static Optional<String> diagnose(long rip, long cr3, long ramBytes, GuestSymbols host) {
        long root = cr3 & ~0xfffL;
        if (Long.compareUnsigned(root, ramBytes) < 0) {
            return Optional.empty();
        }
        return host.locate(rip)
                .filter(s -> s.name().equals(WORLD_SWITCH) && s.module().equals(Optional.of("kvm_amd"))
                        && s.offset() < WORLD_SWITCH_SIZE)
                .map(s -> "the guest's rip 0x" + Long.toHexString(rip) + " is the emulated KVM host's own "
                        + WORLD_SWITCH + "+0x" + Long.toHexString(s.offset()) + " [kvm_amd] and its CR3 0x"
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
