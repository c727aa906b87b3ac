package io.actovisor.devices.guest.scripted;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.memory.AddressRange;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Test;

/** The order the workload gives frames to the balloon: whole free blocks from the top, other free frames, work area. */
class BalloonablePagesTest {
    private static final long MIB = 1L << 20;

    @Test
    void theDefaultVmGivesWholeBlocksFromTheTopThenTheRestThenTheWorkArea() {
        // 64 MiB of RAM, a 2 MiB work area at 1 MiB: free RAM is [3 MiB, 64 MiB), 30 whole blocks from 4 MiB.
        BalloonablePages plan = BalloonablePages.of(GuestLayout.of(2 * MIB), 64 * MIB);
        assertEquals(30, plan.blocks());
        assertEquals((61 * MIB) / 4096, plan.freePages());
        assertEquals(plan.freePages() + 512, plan.count());
        assertEquals((62 * MIB) / 4096, plan.frame(0), "the first frame is the start of the top block");
        assertEquals((64 * MIB) / 4096 - 1, plan.frame(511));
        assertEquals((60 * MIB) / 4096, plan.frame(512));
        assertEquals((3 * MIB) / 4096, plan.frame(30 * 512), "then the free frames below the first block");
        assertEquals(MIB / 4096, plan.frame(plan.freePages()), "the work area comes last, from its start");
        assertEquals(0, plan.workPagesHeld(2048), "8 MiB come from free RAM");
        assertEquals(10, plan.workPagesHeld(plan.freePages() + 10));
    }

    @Test
    void everyFrameIsGivenExactlyOnceAndStaysInFreeRamOrTheWorkArea() {
        for (long ram : List.of(3 * MIB, 3 * MIB + 8192, 5 * MIB, 7 * MIB + 4096, 16 * MIB, 64 * MIB + 12288)) {
            BalloonablePages plan = BalloonablePages.of(GuestLayout.of(2 * MIB), ram);
            Set<Long> seen = new HashSet<>();
            for (long i = 0; i < plan.count(); i++) {
                long gpa = plan.frame(i) * 4096;
                assertTrue(gpa >= MIB && gpa < ram, "frame " + i + " at 0x" + Long.toHexString(gpa) + " of " + ram);
                assertTrue(seen.add(gpa), "frame " + i + " given twice");
            }
            assertEquals((ram - MIB) / 4096, seen.size());
        }
    }

    @Test
    void freeBlocksAreTheWholeAlignedBlocksTheBalloonDoesNotHold() {
        BalloonablePages plan = BalloonablePages.of(GuestLayout.of(2 * MIB), 16 * MIB);
        assertEquals(6, plan.blocks());
        assertEquals(1, plan.firstFreeBlock(1), "a partly held block is not free");
        List<AddressRange> free = plan.freeBlocks(512, plan.blocks());
        assertEquals(5, free.size());
        assertEquals(AddressRange.of(12 * MIB, 2 * MIB), free.get(0));
        assertEquals(AddressRange.of(4 * MIB, 2 * MIB), free.get(4));
        assertEquals(List.of(AddressRange.of(12 * MIB, 2 * MIB)), plan.freeBlocks(512, 2));
    }
}
