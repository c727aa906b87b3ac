package io.actovisor.kernel.vfio;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.memory.sys.NativeBuffer;
import java.util.List;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.constraints.IntRange;
import net.jqwik.api.constraints.Size;
import org.junit.jupiter.api.Test;

/** The capability-chain walk: well-formed chains in order, and no malformed reply can make it loop or read wild. */
class CapabilityChainTest {
    @Test
    void walksAWellFormedChainInOrder() {
        try (NativeBuffer info = NativeBuffer.allocate(64)) {
            info.putShort(24, (short) 3).putShort(26, (short) 1).putInt(28, 40)
                    .putShort(40, (short) 1).putShort(42, (short) 2).putInt(44, 0);
            CapabilityChain chain = CapabilityChain.walk(info, 24, 24, "TEST_INFO");
            assertEquals(List.of(new CapabilityChain.Capability(3, 1, 24), new CapabilityChain.Capability(1, 2, 40)),
                    chain.capabilities());
            assertEquals(40, chain.find(1).orElseThrow().offset());
            assertTrue(chain.find(7).isEmpty());
            assertTrue(CapabilityChain.walk(info, 0, 24, "TEST_INFO").capabilities().isEmpty());
        }
    }

    @Test
    void refusesHeadersInsideTheFixedPartOrPastTheEnd() {
        try (NativeBuffer info = NativeBuffer.allocate(32)) {
            VfioException inside = assertThrows(VfioException.class, () -> CapabilityChain.walk(info, 8, 24, "X"));
            assertTrue(inside.getMessage().contains("offset 8"), inside.getMessage());
            assertThrows(VfioException.class, () -> CapabilityChain.walk(info, 28, 24, "X"));
            info.putInt(28, Integer.MAX_VALUE - 2); // next + header size overflows a signed int
            assertThrows(VfioException.class, () -> CapabilityChain.walk(info, 24, 24, "X"));
            info.putInt(28, -8); // next = 0xfffffff8
            VfioException wild = assertThrows(VfioException.class, () -> CapabilityChain.walk(info, 24, 24, "X"));
            assertTrue(wild.getMessage().contains("offset 4294967288"), wild.getMessage());
        }
    }

    @Property(tries = 300)
    void arbitraryRepliesEndOrFailCleanly(@ForAll @Size(min = 32, max = 96) byte[] reply,
            @ForAll @IntRange(min = 0, max = 100) int first) {
        try (NativeBuffer info = NativeBuffer.allocate(reply.length)) {
            info.putBytes(0, reply);
            try {
                CapabilityChain chain = CapabilityChain.walk(info, first, 24, "FUZZ");
                assertTrue(chain.capabilities().size() <= reply.length / VfioAbi.CapHeader.SIZE + 1);
            } catch (VfioException e) {
                assertTrue(e.getMessage().startsWith("FUZZ returned a malformed capability chain"), e.getMessage());
            }
        }
    }
}
