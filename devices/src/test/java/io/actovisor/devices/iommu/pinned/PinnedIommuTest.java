package io.actovisor.devices.iommu.pinned;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.devices.iommu.DmaFault;
import io.actovisor.devices.iommu.DmaPermissions;
import io.actovisor.devices.iommu.DmaPort;
import io.actovisor.kernel.uring.IoUring;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.HostAddress;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.sys.ProcessResources;
import io.actovisor.memory.testing.NativeRequirement;
import java.io.IOException;
import java.util.Arrays;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** Real pins: device DMA reaches the pinned page, the seed's failure reproduces, and nothing is left after close. */
class PinnedIommuTest {
    private static final long PAGE = 4096;
    private static final long IOVA = 0x100000;

    @BeforeAll
    static void requireIoUring() {
        NativeRequirement.require("io_uring", IoUring.unavailabilityCause());
    }

    private static long vmPinnedKib() {
        return ProcessResources.statusKib("VmPin");
    }

    /**
     * Coordinated discard needs a block's pins gone before the block is discarded. A buffer-table update that empties
     * one slot must release that slot's pins by the time {@code unmap} returns: {@code VmPin} drops at once.
     */
    @Test
    void unmappingOneBlockReleasesItsPinsBeforeUnmapReturns() {
        long block = 2L << 20;
        try (HostMemory memory = HostMemory.anonymous("blocks", 4 * block); PinnedIommu iommu = PinnedIommu.open()) {
            PinReleaseTest.withoutHugePages(memory);
            memory.populate(0, memory.size());
            long before = vmPinnedKib();
            for (int b = 0; b < 4; b++) {
                iommu.map(AddressRange.of(IOVA + b * block, block), memory.base().checkedAdd(b * block),
                        DmaPermissions.READ_WRITE);
            }
            assertEquals(before + 4 * block / 1024, vmPinnedKib(), "four blocks pinned");
            for (int b = 0; b < 4; b++) {
                iommu.unmap(AddressRange.of(IOVA + b * block, block));
                assertEquals(before + (3 - b) * block / 1024, vmPinnedKib(), "block " + b + " unpinned at once");
            }
        }
    }

    @Test
    void deviceReadsAndWritesGoThroughTheMapping() {
        try (HostMemory memory = HostMemory.anonymous("dma", 8 * PAGE); PinnedIommu iommu = PinnedIommu.open()) {
            memory.populate(0, memory.size());
            iommu.map(AddressRange.of(IOVA, 8 * PAGE), memory.base(), DmaPermissions.READ_WRITE);
            DmaPort port = iommu.dmaPort().orElseThrow();
            byte[] text = "written by the CPU".getBytes();
            memory.write(memory.base().checkedAdd(PAGE - 4), text);
            assertArrayEquals(text, port.read(IOVA + PAGE - 4, text.length), "a read across a page boundary");
            byte[] fromDevice = "written by the device".getBytes();
            port.write(IOVA + 3 * PAGE, fromDevice);
            assertArrayEquals(fromDevice, memory.read(memory.base().checkedAdd(3 * PAGE), fromDevice.length));
            DmaFault fault = assertThrows(DmaFault.class, () -> port.read(IOVA + 8 * PAGE, 1));
            assertEquals(IOVA + 8 * PAGE, fault.iova());
            assertTrue(fault.getMessage().contains("0x108000"), fault.getMessage());
        }
    }

    @Test
    void aReadOnlyMappingRefusesDeviceWrites() {
        try (HostMemory memory = HostMemory.anonymous("rom", 2 * PAGE); PinnedIommu iommu = PinnedIommu.open()) {
            memory.populate(0, memory.size());
            iommu.map(AddressRange.of(IOVA, 2 * PAGE), memory.base(), DmaPermissions.READ);
            DmaPort port = iommu.dmaPort().orElseThrow();
            assertThrows(DmaFault.class, () -> port.write(IOVA, new byte[] {1}));
            assertEquals(0, port.read(IOVA, 1)[0]);
        }
    }

    /** The seed: after MADV_DONTNEED and a CPU write, the device still reads the old page. */
    @Test
    void aDiscardedPinnedPageDivergesFromWhatTheCpuSees() {
        try (HostMemory memory = HostMemory.anonymous("seed", 4 * PAGE); PinnedIommu iommu = PinnedIommu.open()) {
            HostAddress page = memory.base().checkedAdd(PAGE);
            byte[] a = new byte[64];
            Arrays.fill(a, (byte) 'A');
            memory.write(page, a);
            long pfnBefore = memory.pfn(page).orElse(-1);
            iommu.map(AddressRange.of(IOVA, 4 * PAGE), memory.base(), DmaPermissions.READ_WRITE);
            memory.discard(PAGE, PAGE);
            byte[] b = new byte[64];
            Arrays.fill(b, (byte) 'B');
            memory.write(page, b);
            assertArrayEquals(b, memory.read(page, 64), "the CPU sees its new page");
            assertArrayEquals(a, iommu.dmaPort().orElseThrow().read(IOVA + PAGE, 64),
                    "the device still reads the pinned old page");
            long pfnAfter = memory.pfn(page).orElse(-2);
            if (pfnBefore >= 0 && pfnAfter >= 0) {
                assertTrue(pfnBefore != pfnAfter, "the CPU's page is a different physical page");
            }
        }
    }

    @Test
    void pinsAreRealAndCloseLeavesNothing() throws IOException {
        ProcessResources before = ProcessResources.snapshot();
        long pinnedBefore = vmPinnedKib();
        HostMemory memory = HostMemory.anonymous("pins", 256 * PAGE);
        PinnedIommu iommu = PinnedIommu.open();
        iommu.map(AddressRange.of(IOVA, 128 * PAGE), memory.base(), DmaPermissions.READ_WRITE);
        iommu.map(AddressRange.of(IOVA + 128 * PAGE, 128 * PAGE), memory.base().checkedAdd(128 * PAGE),
                DmaPermissions.READ_WRITE);
        assertEquals(256 * PAGE, iommu.pinnedBytes());
        if (pinnedBefore >= 0) {
            assertEquals(pinnedBefore + 256 * PAGE / 1024, vmPinnedKib(), "the kernel counts the pins (VmPin)");
        }
        iommu.unmap(AddressRange.of(IOVA, 128 * PAGE));
        assertEquals(128 * PAGE, iommu.pinnedBytes());
        if (pinnedBefore >= 0) {
            assertEquals(pinnedBefore + 128 * PAGE / 1024, vmPinnedKib(), "unmap unpins");
        }
        iommu.close();
        iommu.close();
        memory.close();
        if (pinnedBefore >= 0) {
            assertEquals(pinnedBefore, vmPinnedKib());
        }
        assertTrue(ProcessResources.snapshot().nativeFdsOpenedSince(before).isEmpty(), "no ring or memfd left");
        assertEquals(java.util.List.of(), ProcessResources.snapshot().mappingsMentioning("io_uring"));
    }

    @Test
    void aMappingLargerThanOneBufferTakesSeveralSlots() {
        long size = (1L << 30) + 2 * PAGE;
        try (HostMemory memory = HostMemory.anonymous("big", size); PinnedIommu iommu = PinnedIommu.open()) {
            // Not populated: only the few touched pages are ever faulted in.
            memory.writeByte(memory.base().checkedAdd((1L << 30) + PAGE), (byte) 0x5a);
            iommu.map(AddressRange.of(0, size), memory.base(), DmaPermissions.READ_WRITE);
            assertEquals(0x5a, iommu.dmaPort().orElseThrow().read((1L << 30) + PAGE, 1)[0]);
            assertEquals(size, iommu.pinnedBytes());
        }
    }
}
