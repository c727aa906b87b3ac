package io.actovisor.kernel.kvm;

import java.util.Arrays;

/**
 * CPUID leaves as {@code kvm_cpuid_entry2} records, copied out of the kernel's {@code kvm_cpuid2}; passed back
 * unchanged to {@link KvmVcpu#setCpuid}.
 */
public final class CpuidEntries {
    private final byte[] entries;

    CpuidEntries(byte[] entries) {
        if (entries.length % KvmAbi.KVM_CPUID_ENTRY2_SIZE != 0) {
            throw new IllegalArgumentException("CPUID entry bytes " + entries.length + " are not a multiple of "
                    + KvmAbi.KVM_CPUID_ENTRY2_SIZE);
        }
        this.entries = entries.clone();
    }

    /** The number of leaves. */
    public int count() {
        return entries.length / KvmAbi.KVM_CPUID_ENTRY2_SIZE;
    }

    byte[] bytes() {
        return entries.clone();
    }

    /**
     * These leaves as vCPU {@code apicId} must see them: its initial APIC id in leaf 1 (EBX bits 31-24) and its
     * x2APIC id in leaves 0xb and 0x1f (EDX), which {@code KVM_GET_SUPPORTED_CPUID} leaves at zero.
     */
    public CpuidEntries forApicId(int apicId) {
        if (apicId < 0 || apicId > 255) {
            throw new IllegalArgumentException("an xAPIC id is 0-255, not " + apicId);
        }
        byte[] out = entries.clone();
        java.nio.ByteBuffer b = java.nio.ByteBuffer.wrap(out).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < count(); i++) {
            int at = i * KvmAbi.KVM_CPUID_ENTRY2_SIZE;
            int function = function(i);
            if (function == 1) {
                b.putInt(at + KvmAbi.CPUID_ENTRY_EBX, (b.getInt(at + KvmAbi.CPUID_ENTRY_EBX) & 0x00ffffff)
                        | apicId << 24);
            } else if (function == 0xb || function == 0x1f) {
                b.putInt(at + KvmAbi.CPUID_ENTRY_EDX, apicId);
            }
        }
        return new CpuidEntries(out);
    }

    /**
     * These leaves with {@code bits} also set in ECX of every entry of leaf {@code function}; e.g. leaf 1's
     * "hypervisor present" bit 31, which {@code KVM_GET_SUPPORTED_CPUID} leaves to the VMM (QEMU and Firecracker
     * set it) and without which Linux does not look for KVM's leaves (kvm-clock, paravirtual features).
     */
    public CpuidEntries withEcxBits(int function, int bits) {
        byte[] out = entries.clone();
        java.nio.ByteBuffer b = java.nio.ByteBuffer.wrap(out).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < count(); i++) {
            if (function(i) == function) {
                int at = i * KvmAbi.KVM_CPUID_ENTRY2_SIZE + KvmAbi.CPUID_ENTRY_ECX;
                b.putInt(at, b.getInt(at) | bits);
            }
        }
        return new CpuidEntries(out);
    }

    /** Register {@code registerOffset} ({@code KvmAbi.CPUID_ENTRY_EAX}...) of the first entry of {@code function}. */
    public java.util.OptionalInt register(int function, int registerOffset) {
        java.nio.ByteBuffer b = java.nio.ByteBuffer.wrap(entries).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < count(); i++) {
            if (function(i) == function) {
                return java.util.OptionalInt.of(b.getInt(i * KvmAbi.KVM_CPUID_ENTRY2_SIZE + registerOffset));
            }
        }
        return java.util.OptionalInt.empty();
    }

    /** The CPUID function (leaf number) of entry {@code i}. */
    public int function(int i) {
        int at = i * KvmAbi.KVM_CPUID_ENTRY2_SIZE;
        return (entries[at] & 0xff) | (entries[at + 1] & 0xff) << 8 | (entries[at + 2] & 0xff) << 16
                | (entries[at + 3] & 0xff) << 24;
    }

    @Override
    public String toString() {
        return "CpuidEntries(" + count() + " leaves, hash " + Arrays.hashCode(entries) + ")";
    }
}
