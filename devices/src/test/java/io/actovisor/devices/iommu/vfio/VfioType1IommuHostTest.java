package io.actovisor.devices.iommu.vfio;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.devices.iommu.DmaPermissions;
import io.actovisor.devices.iommu.IommuException;
import io.actovisor.kernel.vfio.Vfio;
import io.actovisor.kernel.vfio.VfioException;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.HostAddress;
import io.actovisor.memory.sys.Mman;
import io.actovisor.memory.sys.Posix;
import io.actovisor.memory.sys.ProcessResources;
import io.actovisor.memory.testing.NativeRequirement;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.TreeMap;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * vfio-type1 through the real libc binding. Where the host has no VFIO (this CI) the open must fail with the
 * reason and leave no fd behind; where it has VFIO and {@code ACTOVISOR_VFIO_GROUP} names a viable group bound to
 * vfio-pci, a real map and unmap run. VFIO is optional even under {@code ACTOVISOR_REQUIRE_NATIVE=1}.
 */
class VfioType1IommuHostTest {
    private static final String GROUP_VARIABLE = "ACTOVISOR_VFIO_GROUP";

    @TempDir
    Path dir;

    @BeforeAll
    static void needsLibc() {
        NativeRequirement.require("libc through JNA", Posix.unavailabilityCause());
    }

    @Test
    void choosingVfioType1WithoutAUsableGroupFailsWithTheReasonAndLeavesNothing() {
        ProcessResources before = ProcessResources.snapshot();
        // A group id no host has: on a host without VFIO the reason is "no /dev/vfio", with VFIO "group missing".
        VfioException e = assertThrows(VfioException.class, () -> VfioType1Iommu.open(List.of(999_999)));
        if (!Files.isDirectory(Vfio.DEFAULT_ROOT)) {
            assertEquals(VfioException.Reason.NO_VFIO, e.reason());
            assertTrue(e.getMessage().startsWith("no /dev/vfio: the host has no VFIO"), e.getMessage());
            assertEquals(Optional.of(e.getMessage()).map(m -> m.substring(0, 20)),
                    Vfio.unavailabilityCause().map(m -> m.substring(0, 20)));
            assertTrue(!Vfio.isAvailable());
        } else {
            assertTrue(e.reason() == VfioException.Reason.GROUP_MISSING
                    || e.reason() == VfioException.Reason.NO_PERMISSION, e.toString());
        }
        assertEquals(Map.of(), ProcessResources.snapshot().nativeFdsOpenedSince(before));
    }

    @Test
    void aFileThatIsNotAContainerIsRefusedWithTheIoctlErrnoAndClosed() throws Exception {
        Files.createFile(dir.resolve("vfio"));
        Map<Integer, String> before = fdsUnder(dir);
        VfioException e = assertThrows(VfioException.class,
                () -> VfioType1Iommu.open(Posix.system(), dir, List.of(1)));
        assertEquals(VfioException.Reason.NOT_A_CONTAINER, e.reason());
        assertTrue(e.getMessage().contains("ioctl(VFIO_GET_API_VERSION) failed: ENOTTY (25)"), e.getMessage());
        assertEquals(before, fdsUnder(dir), "the container fd was not closed");
    }

    @Test
    void aFileThatIsNotAGroupIsRefusedWithTheIoctlErrnoAndClosed() throws Exception {
        Files.createFile(dir.resolve("7"));
        Map<Integer, String> before = fdsUnder(dir);
        VfioException e = assertThrows(VfioException.class,
                () -> io.actovisor.kernel.vfio.VfioGroup.open(Posix.system(), dir, 7));
        assertEquals(VfioException.Reason.NATIVE, e.reason());
        assertTrue(e.getMessage().contains("ioctl(VFIO_GROUP_GET_STATUS) failed: ENOTTY (25)"), e.getMessage());
        assertEquals(before, fdsUnder(dir), "the group fd was not closed");
    }

    private static Map<Integer, String> fdsUnder(Path dir) {
        Map<Integer, String> out = new TreeMap<>();
        ProcessResources.snapshot().fds().forEach((fd, target) -> {
            if (target.startsWith(dir.toString())) {
                out.put(fd, target);
            }
        });
        return out;
    }

    @Test
    void mapAndUnmapOnARealGroup() {
        NativeRequirement.optional("VFIO", Vfio.unavailabilityCause());
        String group = System.getenv(GROUP_VARIABLE);
        NativeRequirement.optional("a VFIO group", group == null ? Optional.of("set " + GROUP_VARIABLE
                + " to the number of an IOMMU group bound to vfio-pci (docs/vfio.md)") : Optional.empty());
        int id = Integer.parseInt(group);
        NativeRequirement.optional("VFIO group " + id, Vfio.groupUnavailabilityCause(id));

        Posix posix = Posix.system();
        ProcessResources before = ProcessResources.snapshot();
        long size = 2L << 20;
        long host = posix.mmap(0, size, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_PRIVATE | Mman.MAP_ANONYMOUS, -1, 0);
        try (VfioType1Iommu iommu = VfioType1Iommu.open(List.of(id))) {
            long base = iommu.info().iovaRanges().get(0).alignInward(size).orElseThrow().base();
            AddressRange target = AddressRange.of(base, size);
            iommu.map(target, HostAddress.of(host), DmaPermissions.READ_WRITE);
            assertEquals(size, iommu.pinnedBytes());
            IommuException overlap = assertThrows(IommuException.class,
                    () -> iommu.map(target, HostAddress.of(host), DmaPermissions.READ_WRITE));
            assertEquals(IommuException.Kind.OVERLAP, overlap.kind());
            assertEquals(1, iommu.unmap(target).size());
        } finally {
            posix.munmap(host, size);
        }
        assertEquals(Map.of(), ProcessResources.snapshot().nativeFdsOpenedSince(before));
    }
}
