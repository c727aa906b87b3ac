package io.actovisor.kernel.kvm;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import org.junit.jupiter.api.Test;

class CpuidEntriesTest {
    private static CpuidEntries leaves(int... functionsAndEcx) {
        ByteBuffer b = ByteBuffer.allocate(functionsAndEcx.length / 2 * KvmAbi.KVM_CPUID_ENTRY2_SIZE)
                .order(ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < functionsAndEcx.length; i += 2) {
            int at = i / 2 * KvmAbi.KVM_CPUID_ENTRY2_SIZE;
            b.putInt(at, functionsAndEcx[i]);
            b.putInt(at + KvmAbi.CPUID_ENTRY_ECX, functionsAndEcx[i + 1]);
        }
        return new CpuidEntries(b.array());
    }

    @Test
    void ecxBitsAreSetInTheNamedLeafOnly() {
        CpuidEntries out = leaves(0, 0x11, 1, 0x80202001, 7, 0x5).withEcxBits(1, 1 << 31);
        assertEquals(0x80202001 | 1 << 31, out.register(1, KvmAbi.CPUID_ENTRY_ECX).orElseThrow());
        assertEquals(0x11, out.register(0, KvmAbi.CPUID_ENTRY_ECX).orElseThrow());
        assertEquals(0x5, out.register(7, KvmAbi.CPUID_ENTRY_ECX).orElseThrow());
        assertEquals(0x00202001, leaves(1, 0x00202001).withEcxBits(1, 0x00200000).register(1,
                KvmAbi.CPUID_ENTRY_ECX).orElseThrow());
        assertEquals(1 << 31, leaves(1, 0).withEcxBits(1, 1 << 31).register(1, KvmAbi.CPUID_ENTRY_ECX)
                .orElseThrow());
    }

    @Test
    void aMissingLeafHasNoRegister() {
        assertEquals(true, leaves(0, 1).register(0x40000000, KvmAbi.CPUID_ENTRY_EAX).isEmpty());
    }
}
