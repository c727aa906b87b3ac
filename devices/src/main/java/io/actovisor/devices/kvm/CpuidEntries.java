package io.actovisor.devices.kvm;

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
