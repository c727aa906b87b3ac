package io.actovisor.devices.iommu.vfio;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.devices.iommu.DmaMapping;
import io.actovisor.devices.iommu.DmaPermissions;
import io.actovisor.devices.iommu.IommuException;
import io.actovisor.kernel.vfio.RecordingPosix;
import io.actovisor.kernel.vfio.ScriptedVfioHost;
import io.actovisor.kernel.vfio.Type1KernelModel;
import io.actovisor.kernel.vfio.VfioAbi;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.HostAddress;
import io.actovisor.memory.sys.NativeException;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.Combinators;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;

/**
 * vfio-type1 against {@link Type1KernelModel} (a model of the kernel's type1v2 rules) over random map/unmap
 * sequences: after every operation the backend's table equals the kernel model's, a refused operation changes
 * neither, and each refusal carries the kind the contract names for the kernel's errno.
 */
class VfioType1IommuModelTest {
    private static final long PAGE = 0x1000;
    private static final int LIMIT = 6;
    private static final List<AddressRange> RANGES = List.of(AddressRange.of(0, 0x3_0000),
            AddressRange.of(0x4_0000, 0x4_0000));

    /** One step: map (host derived from the IOVA so contents are traceable) or unmap, in pages. */
    record Op(boolean map, long firstPage, long pages, boolean misalign) {
        AddressRange range() {
            return AddressRange.of(firstPage * PAGE + (misalign ? 0x800 : 0), pages * PAGE);
        }
    }

    @Provide
    Arbitrary<List<Op>> sequences() {
        Arbitrary<Op> op = Combinators.combine(Arbitraries.of(true, true, false), Arbitraries.longs().between(0, 0x90),
                Arbitraries.longs().between(1, 0x18), Arbitraries.integers().between(0, 19).map(i -> i == 0))
                .as(Op::new);
        return op.list().ofMinSize(1).ofMaxSize(40);
    }

    @Property(tries = 200)
    void theBackendMirrorsTheKernelTable(@ForAll("sequences") List<Op> ops) {
        Type1KernelModel kernel = new Type1KernelModel(PAGE, RANGES, LIMIT);
        RecordingPosix posix = kernel.install(ScriptedVfioHost.create(Path.of("/dev/vfio-model"), 1));
        try (VfioType1Iommu iommu = VfioType1Iommu.open(posix, Path.of("/dev/vfio-model"), List.of(1))) {
            assertEquals(LIMIT, iommu.info().maxMappings());
            assertEquals(RANGES, iommu.info().iovaRanges());
            for (Op op : ops) {
                Map<Long, Type1KernelModel.Mapping> before = kernel.table();
                List<DmaMapping> backendBefore = iommu.mappings();
                try {
                    if (op.map()) {
                        iommu.map(op.range(), HostAddress.of(0x7f00_0000_0000L + op.range().base()),
                                DmaPermissions.READ_WRITE);
                    } else {
                        List<DmaMapping> gone = iommu.unmap(op.range());
                        assertTrue(gone.stream().allMatch(m -> op.range().contains(m.iova())));
                    }
                } catch (IommuException e) {
                    assertEquals(before, kernel.table(), "a refused " + op + " changed the kernel");
                    assertEquals(backendBefore, iommu.mappings(), "a refused " + op + " changed the backend");
                    checkKind(e, op);
                }
                assertEquals(kernelView(kernel), backendView(iommu), "after " + op);
                assertEquals(kernel.table().values().stream().mapToLong(Type1KernelModel.Mapping::size).sum(),
                        iommu.pinnedBytes());
            }
        }
        assertEquals(Map.of(), kernel.table(), "close unmaps everything");
        assertEquals(Map.of(), posix.openFds());
    }

    private static void checkKind(IommuException e, Op op) {
        if (e.getCause() instanceof NativeException n) {
            IommuException.Kind expected = switch (n.errnoName()) {
                case "EEXIST" -> IommuException.Kind.OVERLAP;
                case "ENOSPC" -> IommuException.Kind.LIMIT;
                default -> IommuException.Kind.NATIVE;
            };
            assertEquals(expected, e.kind(), e.getMessage());
        } else {
            // Refused before the kernel by the Type1MappingTable pre-check: alignment, range, the bisect rule, or an
            // overlap or the mapping limit (which the kernel model would refuse with EEXIST or ENOSPC).
            assertTrue(op.misalign() ? e.kind() == IommuException.Kind.MISALIGNED
                    : e.kind() == IommuException.Kind.OUT_OF_RANGE || e.kind() == IommuException.Kind.PARTIAL_UNMAP
                            || (op.map() && (e.kind() == IommuException.Kind.OVERLAP
                                    || e.kind() == IommuException.Kind.LIMIT)),
                    e.getMessage());
        }
    }

    private static Map<Long, Long> kernelView(Type1KernelModel kernel) {
        Map<Long, Long> out = new TreeMap<>();
        kernel.table().values().forEach(m -> out.put(m.iova(), m.size()));
        return out;
    }

    private static Map<Long, Long> backendView(VfioType1Iommu iommu) {
        Map<Long, Long> out = new TreeMap<>();
        iommu.mappings().forEach(m -> out.put(m.iova().base(), m.iova().size()));
        return out;
    }

    @Property(tries = 1)
    void theModelAnswersFlagsLikeTheKernel() {
        Type1KernelModel kernel = new Type1KernelModel(PAGE, RANGES, LIMIT);
        RecordingPosix posix = kernel.install(ScriptedVfioHost.create(Path.of("/dev/vfio-model"), 1));
        try (VfioType1Iommu iommu = VfioType1Iommu.open(posix, Path.of("/dev/vfio-model"), List.of(1))) {
            iommu.map(AddressRange.of(0, PAGE), HostAddress.of(0x10_0000), DmaPermissions.WRITE);
            assertEquals(VfioAbi.DmaMap.FLAG_WRITE, kernel.table().get(0L).flags());
        }
    }
}
