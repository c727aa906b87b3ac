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
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.sys.Mman;
import io.actovisor.memory.sys.Posix;
import io.actovisor.memory.sys.ProcessResources;
import io.actovisor.memory.testing.NativeRequirement;
import java.util.Arrays;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The pinned backend releases a mapping's pins before {@code unmap} returns in the mode the kernel's probe chose, and
 * in both modes on this kernel; the nested 6.1 guest runs this class too ({@code NestedCoordinatedType1Test}).
 */
class PinReleaseTest {
    private static final Logger LOG = LoggerFactory.getLogger(PinReleaseTest.class);
    private static final long BLOCK = 2L << 20;
    private static final long IOVA = 0x200000;

    @BeforeAll
    static void requireIoUring() {
        NativeRequirement.require("io_uring", IoUring.unavailabilityCause());
    }

    /**
     * io_uring charges a transparent huge page to each ring's buffers that touch it (6.1, one ring per mapping: a
     * block straddling two huge pages counts 4 MiB): tests that compare {@code VmPin} exactly use small pages.
     */
    static void withoutHugePages(HostMemory memory) {
        Posix.system().madvise(memory.base().value(), memory.size(), Mman.MADV_NOHUGEPAGE);
    }

    private static long vmPinnedKib() {
        return ProcessResources.statusKib("VmPin");
    }

    @Test
    void theProbeFindsAReleaseThatTheKernelConfirmsSynchronously() {
        PinRelease.Probe probe = PinRelease.probeOnce();
        LOG.info("kernel {}: pin release probe {}", System.getProperty("os.version"), probe);
        assertTrue(probe.confirmed(), "neither release was synchronous: " + probe);
        assertEquals(probe.mode(), PinRelease.ofThisKernel());
        assertEquals(3, probe.rounds().size());
    }

    @ParameterizedTest
    @EnumSource(PinRelease.class)
    void unmappingOneBlockReleasesItsPinsBeforeUnmapReturns(PinRelease release) {
        PinRelease.Probe probe = PinRelease.probeOnce();
        long before = vmPinnedKib();
        try (HostMemory memory = HostMemory.anonymous("blocks", 4 * BLOCK);
                PinnedIommu iommu = PinnedIommu.open(Posix.system(), 64, release)) {
            withoutHugePages(memory);
            memory.populate(0, memory.size());
            for (int b = 0; b < 4; b++) {
                iommu.map(AddressRange.of(IOVA + b * BLOCK, BLOCK), memory.base().checkedAdd(b * BLOCK),
                        DmaPermissions.READ_WRITE);
            }
            assertEquals(before + 4 * BLOCK / 1024, vmPinnedKib(), "four blocks pinned");
            for (int b = 0; b < 4; b++) {
                iommu.unmap(AddressRange.of(IOVA + b * BLOCK, BLOCK));
                long now = vmPinnedKib();
                if (release == probe.mode() || release == PinRelease.RING_PER_MAPPING) {
                    assertEquals(before + (3 - b) * BLOCK / 1024, now, "block " + b + " unpinned by " + release
                            + " before unmap returned (probe: " + probe + ")");
                } else {
                    LOG.info("kernel {}: after {} of block {} VmPin is {} kB, {} kB above the pins still mapped",
                            System.getProperty("os.version"), release, b, now, now - before - (3 - b) * BLOCK / 1024);
                }
            }
        }
    }

    @ParameterizedTest
    @EnumSource(PinRelease.class)
    void theDeviceReadsAndWritesThroughEitherModeAndFaultsOnceUnmapped(PinRelease release) {
        long pinnedBefore = vmPinnedKib();
        ProcessResources fds = ProcessResources.snapshot();
        try (HostMemory memory = HostMemory.anonymous("dma", 2 * BLOCK);
                PinnedIommu iommu = PinnedIommu.open(Posix.system(), 64, release)) {
            withoutHugePages(memory);
            memory.populate(0, memory.size());
            assertEquals(release, iommu.release());
            iommu.map(AddressRange.of(IOVA, BLOCK), memory.base(), DmaPermissions.READ_WRITE);
            iommu.map(AddressRange.of(IOVA + BLOCK, BLOCK), memory.base().checkedAdd(BLOCK),
                    DmaPermissions.READ_WRITE);
            DmaPort port = iommu.dmaPort().orElseThrow();
            byte[] a = new byte[64];
            Arrays.fill(a, (byte) 'A');
            memory.write(memory.base().checkedAdd(BLOCK - 32), a);
            assertArrayEquals(a, port.read(IOVA + BLOCK - 32, 64), "a read across two mappings");
            byte[] b = new byte[64];
            Arrays.fill(b, (byte) 'B');
            port.write(IOVA + BLOCK + 100, b);
            assertArrayEquals(b, memory.read(memory.base().checkedAdd(BLOCK + 100), 64));
            iommu.unmap(AddressRange.of(IOVA + BLOCK, BLOCK));
            assertThrows(DmaFault.class, () -> port.read(IOVA + BLOCK + 100, 1));
            assertArrayEquals(Arrays.copyOf(a, 32), port.read(IOVA + BLOCK - 32, 32), "the other mapping still reads");
        }
        assertEquals(pinnedBefore, vmPinnedKib(), "nothing left pinned");
        assertEquals(java.util.Map.of(), ProcessResources.snapshot().nativeFdsOpenedSince(fds), "no ring left open");
    }
}
