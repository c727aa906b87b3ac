package io.actovisor.devices.iommu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.memory.AddressRange;
import io.actovisor.memory.HostAddress;
import io.actovisor.memory.HostMemory;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The {@link Iommu} contract with VFIO type1 semantics, run against every backend: subclasses say how to open one.
 * Host addresses come from a real {@link HostMemory} block so that backends which pin (pinned, vfio-type1) pin real
 * pages.
 */
public abstract class IommuContractTest {
    protected static final long PAGE = 4096;
    /** Host memory the tests map: 64 pages. */
    protected static final long HOST_SIZE = 64 * PAGE;

    protected HostMemory host;
    private final List<Iommu> opened = new ArrayList<>();

    /** Open a fresh context of the backend under test accepting at most {@code maxMappings} mappings. */
    protected abstract Iommu open(int maxMappings);

    /** The backend name {@link Iommu#backend()} must report. */
    protected abstract String expectedBackend();

    @BeforeEach
    void allocateHost() {
        host = HostMemory.anonymous("iommu-contract", HOST_SIZE);
        host.populate(0, host.size());
    }

    @AfterEach
    void release() {
        opened.forEach(Iommu::close);
        host.close();
    }

    private Iommu iommu(int maxMappings) {
        Iommu iommu = open(maxMappings);
        opened.add(iommu);
        return iommu;
    }

    private Iommu iommu() {
        return iommu(65535);
    }

    protected HostAddress hostPage(long page) {
        return host.base().checkedAdd(page * PAGE);
    }

    private static AddressRange pages(long firstPage, long count) {
        return AddressRange.of(0x1000_0000L + firstPage * PAGE, count * PAGE);
    }

    @Test
    void reportsBackendAndInfo() {
        Iommu iommu = iommu(17);
        assertEquals(expectedBackend(), iommu.backend());
        assertEquals(PAGE, iommu.info().minPageSize());
        assertEquals(17, iommu.info().maxMappings());
        assertTrue(iommu.info().iovaRanges().stream().anyMatch(r -> r.contains(pages(0, 64))),
                "the test IOVAs must be usable: " + iommu.info().iovaRanges());
    }

    @Test
    void mapsAndCountsPinnedBytes() {
        Iommu iommu = iommu();
        iommu.map(pages(0, 4), hostPage(0), DmaPermissions.READ_WRITE);
        iommu.map(pages(8, 2), hostPage(8), DmaPermissions.READ);
        assertEquals(List.of(new DmaMapping(pages(0, 4), hostPage(0), DmaPermissions.READ_WRITE),
                new DmaMapping(pages(8, 2), hostPage(8), DmaPermissions.READ)), iommu.mappings());
        assertEquals(6 * PAGE, iommu.pinnedBytes());
    }

    @Test
    void refusesMisalignmentAndChangesNothing() {
        Iommu iommu = iommu();
        AddressRange good = pages(0, 1);
        assertKind(IommuException.Kind.MISALIGNED,
                () -> iommu.map(AddressRange.of(good.base() + 1, PAGE), hostPage(0), DmaPermissions.READ_WRITE));
        assertKind(IommuException.Kind.MISALIGNED,
                () -> iommu.map(AddressRange.of(good.base(), PAGE + 512), hostPage(0), DmaPermissions.READ_WRITE));
        assertKind(IommuException.Kind.MISALIGNED,
                () -> iommu.map(good, hostPage(0).checkedAdd(8), DmaPermissions.READ_WRITE));
        assertEquals(List.of(), iommu.mappings());
        assertEquals(0, iommu.pinnedBytes());
    }

    @Test
    void refusesEveryKindOfOverlapWithEexist() {
        Iommu iommu = iommu();
        iommu.map(pages(4, 4), hostPage(4), DmaPermissions.READ_WRITE);
        List<DmaMapping> before = iommu.mappings();
        for (AddressRange clash : List.of(pages(4, 4), pages(2, 3), pages(7, 3), pages(5, 1), pages(0, 16))) {
            IommuException e = assertKind(IommuException.Kind.OVERLAP,
                    () -> iommu.map(clash, hostPage(20), DmaPermissions.READ_WRITE));
            assertEquals(clash, e.range().orElseThrow());
        }
        iommu.map(pages(8, 1), hostPage(8), DmaPermissions.READ_WRITE); // touching is not overlapping
        iommu.map(pages(3, 1), hostPage(3), DmaPermissions.READ_WRITE);
        assertEquals(before.size() + 2, iommu.mappings().size());
    }

    @Test
    void refusesPastTheMappingLimitWithItsOwnError() {
        Iommu iommu = iommu(3);
        for (int i = 0; i < 3; i++) {
            iommu.map(pages(i * 2, 1), hostPage(i * 2), DmaPermissions.READ_WRITE);
        }
        IommuException e = assertKind(IommuException.Kind.LIMIT,
                () -> iommu.map(pages(10, 1), hostPage(10), DmaPermissions.READ_WRITE));
        assertTrue(e.getMessage().contains("3"), e.getMessage());
        iommu.unmap(pages(0, 1));
        iommu.map(pages(10, 1), hostPage(10), DmaPermissions.READ_WRITE);
        assertEquals(3, iommu.mappings().size());
    }

    @Test
    void unmapRemovesWholeMappingsInsideTheRange() {
        Iommu iommu = iommu();
        iommu.map(pages(0, 2), hostPage(0), DmaPermissions.READ_WRITE);
        iommu.map(pages(2, 2), hostPage(2), DmaPermissions.READ_WRITE);
        iommu.map(pages(8, 1), hostPage(8), DmaPermissions.READ_WRITE);
        assertEquals(List.of(), iommu.unmap(pages(20, 4)), "nothing mapped there");
        List<DmaMapping> removed = iommu.unmap(pages(0, 6));
        assertEquals(List.of(pages(0, 2), pages(2, 2)), removed.stream().map(DmaMapping::iova).toList());
        assertEquals(List.of(pages(8, 1)), iommu.mappings().stream().map(DmaMapping::iova).toList());
        assertEquals(PAGE, iommu.pinnedBytes());
    }

    @Test
    void refusesToCutAMappingInTwoAndChangesNothing() {
        Iommu iommu = iommu();
        iommu.map(pages(0, 4), hostPage(0), DmaPermissions.READ_WRITE);
        iommu.map(pages(4, 4), hostPage(4), DmaPermissions.READ_WRITE);
        for (AddressRange cut : List.of(pages(0, 1), pages(1, 2), pages(3, 1), pages(0, 5), pages(2, 6))) {
            assertKind(IommuException.Kind.PARTIAL_UNMAP, () -> iommu.unmap(cut));
        }
        assertEquals(2, iommu.mappings().size());
        assertEquals(8 * PAGE, iommu.pinnedBytes());
    }

    @Test
    void closeUnmapsEverythingAndIsIdempotent() {
        Iommu iommu = iommu();
        iommu.map(pages(0, 8), hostPage(0), DmaPermissions.READ_WRITE);
        iommu.close();
        iommu.close();
        assertEquals(0, iommu.pinnedBytes());
        assertEquals(List.of(), iommu.mappings());
        assertKind(IommuException.Kind.CLOSED, () -> iommu.map(pages(0, 1), hostPage(0), DmaPermissions.READ));
    }

    /** Random maps and unmaps against a page-by-page reference of the type1 rules. */
    @Test
    void randomSequencesFollowThePageReference() {
        Random random = new Random(0x5eed);
        for (int round = 0; round < 20; round++) {
            Iommu iommu = iommu(12);
            long[] owner = new long[64]; // IOVA page -> mapping base page + 1, 0 = unmapped
            List<long[]> mappings = new ArrayList<>(); // {firstPage, count}
            for (int step = 0; step < 60; step++) {
                long first = random.nextInt(60);
                long count = 1 + random.nextInt((int) Math.min(6, 64 - first));
                if (random.nextBoolean()) {
                    boolean free = true;
                    for (long p = first; p < first + count; p++) {
                        free &= owner[(int) p] == 0;
                    }
                    boolean expectOk = free && mappings.size() < 12;
                    try {
                        iommu.map(pages(first, count), hostPage(first), DmaPermissions.READ_WRITE);
                        assertTrue(expectOk, "map of " + pages(first, count) + " should have been refused");
                        for (long p = first; p < first + count; p++) {
                            owner[(int) p] = first + 1;
                        }
                        mappings.add(new long[] {first, count});
                    } catch (IommuException e) {
                        assertTrue(!expectOk, "unexpected refusal: " + e.getMessage());
                        assertEquals(free ? IommuException.Kind.LIMIT : IommuException.Kind.OVERLAP, e.kind());
                    }
                } else {
                    boolean cuts = mappings.stream().anyMatch(m -> m[0] < first + count && first < m[0] + m[1]
                            && (m[0] < first || m[0] + m[1] > first + count));
                    try {
                        List<DmaMapping> removed = iommu.unmap(pages(first, count));
                        assertTrue(!cuts, "unmap of " + pages(first, count) + " should have been refused");
                        List<long[]> expected = mappings.stream()
                                .filter(m -> m[0] >= first && m[0] + m[1] <= first + count).toList();
                        assertEquals(expected.size(), removed.size());
                        for (long[] m : expected) {
                            mappings.remove(m);
                            for (long p = m[0]; p < m[0] + m[1]; p++) {
                                owner[(int) p] = 0;
                            }
                        }
                    } catch (IommuException e) {
                        assertTrue(cuts, "unexpected refusal: " + e.getMessage());
                        assertEquals(IommuException.Kind.PARTIAL_UNMAP, e.kind());
                    }
                }
                long expectedBytes = mappings.stream().mapToLong(m -> m[1] * PAGE).sum();
                assertEquals(expectedBytes, iommu.pinnedBytes(), "pinned bytes after step " + step);
                assertEquals(mappings.size(), iommu.mappings().size());
            }
            iommu.close();
        }
    }

    private static IommuException assertKind(IommuException.Kind kind, Runnable operation) {
        IommuException e = assertThrows(IommuException.class, operation::run);
        assertEquals(kind, e.kind(), e.getMessage());
        return e;
    }
}
