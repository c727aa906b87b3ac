package io.actovisor.devices.iommu.vfio;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.devices.iommu.DmaMapping;
import io.actovisor.devices.iommu.DmaPermissions;
import io.actovisor.devices.iommu.IommuException;
import io.actovisor.devices.iommu.IommuInfo;
import io.actovisor.kernel.vfio.RecordingPosix;
import io.actovisor.kernel.vfio.RecordingPosix.IoctlCall;
import io.actovisor.kernel.vfio.ScriptedVfioHost;
import io.actovisor.kernel.vfio.VfioAbi;
import io.actovisor.kernel.vfio.VfioException;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.HostAddress;
import io.actovisor.memory.sys.Errno;
import io.actovisor.memory.sys.NativeException;
import io.actovisor.memory.sys.Posix;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The vfio-type1 backend against a recording {@link io.actovisor.memory.sys.Posix}: the exact ioctl sequence and
 * the structures passed, how the kernel's answers become {@link IommuInfo} and {@link IommuException} kinds, and
 * that every failure on the way in closes what was opened.
 */
class VfioType1IommuTest {
    private static final int GROUP = 12;
    private static final long MIB = 1 << 20;

    @TempDir
    Path root;

    private RecordingPosix host(int... groups) {
        return ScriptedVfioHost.create(root, groups);
    }

    private String path(String name) {
        return root.resolve(name).toString();
    }

    @Test
    void openMapUnmapCloseIssuesTheExactIoctlSequence() {
        RecordingPosix posix = host(GROUP);
        VfioType1Iommu iommu = VfioType1Iommu.open(posix, root, List.of(GROUP));
        iommu.map(AddressRange.of(0x10_0000, 2 * MIB), HostAddress.of(0x7f00_0020_0000L), DmaPermissions.READ_WRITE);
        List<DmaMapping> unmapped = iommu.unmap(AddressRange.of(0, 16 * MIB));
        iommu.close();

        assertEquals(List.of(
                "open " + path("vfio"), "VFIO_GET_API_VERSION", "VFIO_CHECK_EXTENSION",
                "open " + path("12"), "VFIO_GROUP_GET_STATUS", "VFIO_GROUP_SET_CONTAINER", "VFIO_SET_IOMMU",
                "VFIO_IOMMU_GET_INFO", "VFIO_IOMMU_GET_INFO",
                "VFIO_IOMMU_MAP_DMA", "VFIO_IOMMU_UNMAP_DMA",
                "VFIO_GROUP_UNSET_CONTAINER", "close 101", "close 100"), posix.trace());

        RecordingPosix.Open container = (RecordingPosix.Open) posix.calls().get(0);
        assertEquals(Posix.O_RDWR, container.flags());
        int containerFd = container.result();
        int groupFd = ((RecordingPosix.Open) posix.calls().get(3)).result();

        List<IoctlCall> io = posix.ioctls();
        assertEquals(containerFd, io.get(0).fd());
        assertEquals(0, io.get(0).arg());
        assertEquals(VfioAbi.Api.VFIO_TYPE1v2_IOMMU, io.get(1).arg(), "v2 is asked for first");

        IoctlCall status = io.get(2);
        assertEquals(groupFd, status.fd());
        assertEquals(VfioAbi.GroupStatus.SIZE, status.inInt(VfioAbi.GroupStatus.ARGSZ));

        IoctlCall setContainer = io.get(3);
        assertEquals(groupFd, setContainer.fd());
        assertEquals(containerFd, setContainer.inInt(0), "SET_CONTAINER passes the container fd by pointer");

        IoctlCall setIommu = io.get(4);
        assertEquals(containerFd, setIommu.fd());
        assertEquals(VfioAbi.Api.VFIO_TYPE1v2_IOMMU, setIommu.arg());

        IoctlCall firstInfo = io.get(5);
        IoctlCall secondInfo = io.get(6);
        assertEquals(VfioAbi.IommuType1Info.SIZE, firstInfo.inInt(VfioAbi.IommuType1Info.ARGSZ));
        assertEquals(ScriptedVfioHost.iommuInfoSize(2), secondInfo.inInt(VfioAbi.IommuType1Info.ARGSZ),
                "the second GET_INFO uses the argsz the kernel asked for");
        assertEquals(ScriptedVfioHost.iommuInfoSize(2), secondInfo.in().length);

        IoctlCall map = io.get(7);
        assertEquals(containerFd, map.fd());
        assertEquals(VfioAbi.DmaMap.SIZE, map.inInt(VfioAbi.DmaMap.ARGSZ));
        assertEquals(VfioAbi.DmaMap.FLAG_READ | VfioAbi.DmaMap.FLAG_WRITE, map.inInt(VfioAbi.DmaMap.FLAGS));
        assertEquals(0x7f00_0020_0000L, map.inLong(VfioAbi.DmaMap.VADDR));
        assertEquals(0x10_0000L, map.inLong(VfioAbi.DmaMap.IOVA));
        assertEquals(2 * MIB, map.inLong(VfioAbi.DmaMap.MAP_SIZE));

        IoctlCall unmap = io.get(8);
        assertEquals(VfioAbi.DmaUnmap.SIZE, unmap.inInt(VfioAbi.DmaUnmap.ARGSZ));
        assertEquals(0, unmap.inInt(VfioAbi.DmaUnmap.FLAGS));
        assertEquals(0x10_0000L, unmap.inLong(VfioAbi.DmaUnmap.IOVA));
        assertEquals(2 * MIB, unmap.inLong(VfioAbi.DmaUnmap.UNMAP_SIZE), "unmap names the whole mapping");
        assertEquals(1, unmapped.size());

        IoctlCall unset = io.get(9);
        assertEquals(groupFd, unset.fd());
        assertTrue(posix.openFds().isEmpty(), "left open: " + posix.openFds());
    }

    @Test
    void infoComesFromGetInfoAndItsCapabilityChain() {
        try (VfioType1Iommu iommu = VfioType1Iommu.open(host(GROUP), root, List.of(GROUP))) {
            IommuInfo info = iommu.info();
            assertEquals(ScriptedVfioHost.PAGE_SIZES, info.pageSizes());
            assertEquals(4096, info.minPageSize());
            assertEquals(ScriptedVfioHost.IOVA_RANGES, info.iovaRanges());
            assertEquals(ScriptedVfioHost.DMA_AVAILABLE, info.maxMappings());
            assertEquals(List.of(VfioAbi.IommuType1Info.CAP_IOVA_RANGE, VfioAbi.IommuType1Info.CAP_DMA_AVAIL),
                    iommu.kernelInfo().chain().capabilities().stream().map(c -> c.id()).toList());
            assertEquals("vfio-type1", iommu.backend());
        }
    }

    @Test
    void aKernelWithoutCapabilitiesGetsTheWholeSpaceAndTheDefaultLimit() {
        RecordingPosix posix = host(GROUP).on("VFIO_IOMMU_GET_INFO", (call, arg) -> {
            arg.orElseThrow().putInt(VfioAbi.IommuType1Info.FLAGS, VfioAbi.IommuType1Info.FLAG_PGSIZES)
                    .putLong(VfioAbi.IommuType1Info.IOVA_PGSIZES, 0x1000);
            return 0;
        });
        try (VfioType1Iommu iommu = VfioType1Iommu.open(posix, root, List.of(GROUP))) {
            assertEquals(1, posix.ioctls("VFIO_IOMMU_GET_INFO").size(), "no growth without the CAPS flag");
            assertEquals(VfioType1Iommu.DEFAULT_DMA_ENTRY_LIMIT, iommu.info().maxMappings());
            assertEquals(List.of(AddressRange.of(0, Long.MIN_VALUE), AddressRange.of(Long.MIN_VALUE, Long.MIN_VALUE)),
                    iommu.info().iovaRanges());
        }
    }

    @Test
    void type1IsUsedWhenTheKernelHasNoType1v2() {
        RecordingPosix posix = host(GROUP).on("VFIO_CHECK_EXTENSION",
                (call, arg) -> call.arg() == VfioAbi.Api.VFIO_TYPE1_IOMMU ? 1 : 0);
        try (VfioType1Iommu iommu = VfioType1Iommu.open(posix, root, List.of(GROUP))) {
            assertEquals(List.of((long) VfioAbi.Api.VFIO_TYPE1v2_IOMMU, (long) VfioAbi.Api.VFIO_TYPE1_IOMMU),
                    posix.ioctls("VFIO_CHECK_EXTENSION").stream().map(IoctlCall::arg).toList());
            assertEquals(VfioAbi.Api.VFIO_TYPE1_IOMMU, posix.ioctls("VFIO_SET_IOMMU").get(0).arg());
        }
    }

    @Test
    void readOnlyMappingsPassOnlyTheReadFlag() {
        RecordingPosix posix = host(GROUP);
        try (VfioType1Iommu iommu = VfioType1Iommu.open(posix, root, List.of(GROUP))) {
            iommu.map(AddressRange.of(0xf_0000, 0x1_0000), HostAddress.of(0x7f00_0000_0000L), DmaPermissions.READ);
            assertEquals(VfioAbi.DmaMap.FLAG_READ,
                    posix.ioctls("VFIO_IOMMU_MAP_DMA").get(0).inInt(VfioAbi.DmaMap.FLAGS));
        }
    }

    // --- errors at open: the reason, and nothing left open --------------------------------------------------

    private VfioException openFails(RecordingPosix posix, List<Integer> groups) {
        VfioException e = assertThrows(VfioException.class, () -> VfioType1Iommu.open(posix, root, groups));
        assertEquals(Map.of(), posix.openFds(), "a failed open leaves fds behind");
        return e;
    }

    @Test
    void noDevVfioIsReportedAsSuch() {
        RecordingPosix posix = new RecordingPosix();
        Path missing = root.resolve("no-such-dir");
        VfioException e = assertThrows(VfioException.class,
                () -> VfioType1Iommu.open(posix, missing, List.of(GROUP)));
        assertEquals(VfioException.Reason.NO_VFIO, e.reason());
        assertTrue(e.getMessage().contains("no " + missing), e.getMessage());
        assertTrue(e.getMessage().contains("open(" + missing.resolve("vfio") + ") failed: ENOENT (2)")
                || e.getCause().getMessage().contains("ENOENT (2)"));
        assertEquals(Map.of(), posix.openFds());
    }

    @Test
    void containerWithoutPermission() {
        RecordingPosix posix = host(GROUP).openFails(path("vfio"), Errno.EACCES);
        VfioException e = openFails(posix, List.of(GROUP));
        assertEquals(VfioException.Reason.NO_PERMISSION, e.reason());
        assertEquals(Errno.EACCES, e.errno().orElseThrow());
    }

    @Test
    void wrongApiVersionClosesTheContainer() {
        RecordingPosix posix = host(GROUP).on("VFIO_GET_API_VERSION", (call, arg) -> 1);
        VfioException e = openFails(posix, List.of(GROUP));
        assertEquals(VfioException.Reason.NOT_A_CONTAINER, e.reason());
        assertEquals(List.of("open " + path("vfio"), "VFIO_GET_API_VERSION", "close 100"), posix.trace());
    }

    @Test
    void noType1ExtensionClosesTheContainer() {
        RecordingPosix posix = host(GROUP).on("VFIO_CHECK_EXTENSION", (call, arg) -> 0);
        VfioException e = openFails(posix, List.of(GROUP));
        assertEquals(VfioException.Reason.NO_TYPE1, e.reason());
        assertEquals(List.of("open " + path("vfio"), "VFIO_GET_API_VERSION", "VFIO_CHECK_EXTENSION",
                "VFIO_CHECK_EXTENSION", "close 100"), posix.trace());
    }

    @Test
    void missingGroupFileClosesTheContainer() {
        RecordingPosix posix = host();
        VfioException e = openFails(posix, List.of(GROUP));
        assertEquals(VfioException.Reason.GROUP_MISSING, e.reason());
        assertTrue(e.getMessage().contains(path("12")), e.getMessage());
        assertEquals("close 100", posix.trace().get(posix.trace().size() - 1));
    }

    @Test
    void groupWithoutPermissionOrBusy() {
        RecordingPosix posix = host(GROUP).openFails(path("12"), Errno.EPERM);
        assertEquals(VfioException.Reason.NO_PERMISSION, openFails(posix, List.of(GROUP)).reason());
        RecordingPosix busy = host(GROUP).openFails(path("12"), Errno.EBUSY);
        assertEquals(VfioException.Reason.GROUP_BUSY, openFails(busy, List.of(GROUP)).reason());
    }

    @Test
    void notViableGroupIsClosedWithTheContainer() {
        RecordingPosix posix = host(GROUP).on("VFIO_GROUP_GET_STATUS", (call, arg) -> 0);
        VfioException e = openFails(posix, List.of(GROUP));
        assertEquals(VfioException.Reason.GROUP_NOT_VIABLE, e.reason());
        assertTrue(e.getMessage().contains("/sys/kernel/iommu_groups/12/devices"), e.getMessage());
        assertEquals(List.of("open " + path("vfio"), "VFIO_GET_API_VERSION", "VFIO_CHECK_EXTENSION",
                "open " + path("12"), "VFIO_GROUP_GET_STATUS", "close 101", "close 100"), posix.trace());
    }

    @Test
    void setIommuFailureUnsetsAndClosesEverything() {
        RecordingPosix posix = host(GROUP).fail("VFIO_SET_IOMMU", Errno.EPERM);
        VfioException e = openFails(posix, List.of(GROUP));
        assertEquals(VfioException.Reason.NATIVE, e.reason());
        assertTrue(e.getMessage().contains("ioctl(VFIO_SET_IOMMU) failed: EPERM (1)"), e.getMessage());
        assertEquals(List.of("VFIO_GROUP_SET_CONTAINER", "VFIO_SET_IOMMU", "VFIO_GROUP_UNSET_CONTAINER",
                "close 101", "close 100"), posix.trace().subList(5, posix.trace().size()));
    }

    @Test
    void failureAtTheSecondGroupUndoesTheFirst() {
        // The first group is viable and attached; the second is not viable.
        RecordingPosix posix = host(GROUP, 13);
        posix.once("VFIO_GROUP_GET_STATUS", (call, arg) -> {
            arg.orElseThrow().putInt(VfioAbi.GroupStatus.FLAGS, VfioAbi.GroupStatus.FLAG_VIABLE);
            return 0;
        }).once("VFIO_GROUP_GET_STATUS", (call, arg) -> 0);
        VfioException e = openFails(posix, List.of(GROUP, 13));
        assertEquals(VfioException.Reason.GROUP_NOT_VIABLE, e.reason());
        List<String> trace = posix.trace();
        assertEquals(List.of("open " + path("13"), "VFIO_GROUP_GET_STATUS", "close 102",
                "VFIO_GROUP_UNSET_CONTAINER", "close 101", "close 100"), trace.subList(9, trace.size()));
    }

    @Test
    void getInfoFailureClosesWhatWasOpened() {
        RecordingPosix posix = host(GROUP).fail("VFIO_IOMMU_GET_INFO", Errno.ENOTTY);
        RuntimeException e = assertThrows(RuntimeException.class,
                () -> VfioType1Iommu.open(posix, root, List.of(GROUP)));
        assertTrue(e.getMessage().contains("ioctl(VFIO_IOMMU_GET_INFO) failed: ENOTTY (25)"), e.getMessage());
        assertEquals(Map.of(), posix.openFds());
        assertEquals(List.of("VFIO_GROUP_UNSET_CONTAINER", "close 101", "close 100"),
                posix.trace().subList(posix.trace().size() - 3, posix.trace().size()));
    }

    @Test
    void aLoopingCapabilityChainIsRefused() {
        RecordingPosix posix = host(GROUP).on("VFIO_IOMMU_GET_INFO", (call, arg) -> {
            var info = arg.orElseThrow();
            info.putInt(VfioAbi.IommuType1Info.FLAGS, VfioAbi.IommuType1Info.FLAG_PGSIZES
                    | VfioAbi.IommuType1Info.FLAG_CAPS).putLong(VfioAbi.IommuType1Info.IOVA_PGSIZES, 0x1000)
                    .putInt(VfioAbi.IommuType1Info.CAP_OFFSET, 0);
            if (info.size() < 64) {
                info.putInt(VfioAbi.IommuType1Info.ARGSZ, 64);
            } else {
                info.putInt(VfioAbi.IommuType1Info.CAP_OFFSET, 24).putShort(24, (short) 9).putInt(28, 32)
                        .putShort(32, (short) 9).putInt(36, 24);
            }
            return 0;
        });
        VfioException e = openFails(posix, List.of(GROUP));
        assertTrue(e.getMessage().contains("malformed capability chain"), e.getMessage());
    }

    @Test
    void openRejectsAnEmptyOrRepeatedGroupList() {
        RecordingPosix posix = host(GROUP);
        assertThrows(IllegalArgumentException.class, () -> VfioType1Iommu.open(posix, root, List.of()));
        IllegalArgumentException twice = assertThrows(IllegalArgumentException.class,
                () -> VfioType1Iommu.open(posix, root, List.of(GROUP, GROUP)));
        assertTrue(twice.getMessage().contains("[12, 12]"), twice.getMessage());
        assertTrue(posix.calls().isEmpty());
    }

    // --- map and unmap errors ---------------------------------------------------------------------------

    private IommuException mapFails(int errno, AddressRange iova, HostAddress host) {
        RecordingPosix posix = host(GROUP).fail("VFIO_IOMMU_MAP_DMA", errno);
        try (VfioType1Iommu iommu = VfioType1Iommu.open(posix, root, List.of(GROUP))) {
            IommuException e = assertThrows(IommuException.class,
                    () -> iommu.map(iova, host, DmaPermissions.READ_WRITE));
            assertEquals(List.of(), iommu.mappings(), "a refused map must change nothing");
            assertEquals(0, iommu.pinnedBytes());
            assertEquals(errno, assertInstanceOf(NativeException.class, e.getCause()).errno());
            return e;
        }
    }

    @Test
    void eexistIsOverlap() {
        IommuException e = mapFails(Errno.EEXIST, AddressRange.of(0, MIB), HostAddress.of(0x7f00_0000_0000L));
        assertEquals(IommuException.Kind.OVERLAP, e.kind());
        assertTrue(e.getMessage().contains("ioctl(VFIO_IOMMU_MAP_DMA) failed: EEXIST (17)"), e.getMessage());
        assertEquals(AddressRange.of(0, MIB), e.range().orElseThrow());
    }

    @Test
    void enospcIsLimit() {
        IommuException e = mapFails(Errno.ENOSPC, AddressRange.of(0, MIB), HostAddress.of(0x7f00_0000_0000L));
        assertEquals(IommuException.Kind.LIMIT, e.kind());
        assertTrue(e.getMessage().contains("ENOSPC (28)"), e.getMessage());
    }

    @Test
    void enomemAndEpermArePinFailures() {
        IommuException nomem = mapFails(Errno.ENOMEM, AddressRange.of(0, MIB), HostAddress.of(0x7f00_0000_0000L));
        assertEquals(IommuException.Kind.PIN_FAILED, nomem.kind());
        assertTrue(nomem.getMessage().contains("RLIMIT_MEMLOCK"), nomem.getMessage());
        IommuException perm = mapFails(Errno.EPERM, AddressRange.of(0, MIB), HostAddress.of(0x7f00_0000_0000L));
        assertEquals(IommuException.Kind.PIN_FAILED, perm.kind());
    }

    @Test
    void otherErrnosAreNativeWithTheIoctlAndErrno() {
        IommuException e = mapFails(Errno.EINVAL, AddressRange.of(0, MIB), HostAddress.of(0x7f00_0000_0000L));
        assertEquals(IommuException.Kind.NATIVE, e.kind(), "EINVAL on an aligned request is not misalignment");
        assertTrue(e.getMessage().contains("ioctl(VFIO_IOMMU_MAP_DMA) failed: EINVAL (22)"), e.getMessage());
        IommuException busy = mapFails(Errno.EBUSY, AddressRange.of(0, MIB), HostAddress.of(0x7f00_0000_0000L));
        assertEquals(IommuException.Kind.NATIVE, busy.kind());
        assertTrue(busy.getMessage().contains("ioctl(VFIO_IOMMU_MAP_DMA) failed: EBUSY (16)"), busy.getMessage());
    }

    @Test
    void einvalOnAMisalignedRequestIsMisaligned() {
        // The pre-check uses the reported 4 KiB granularity; a kernel that insists on more answers EINVAL.
        assertEquals(IommuException.Kind.MISALIGNED,
                VfioType1Iommu.classify(new NativeException("ioctl(VFIO_IOMMU_MAP_DMA)", Errno.EINVAL),
                        AddressRange.of(0x1000, 0x1000), HostAddress.of(0x2000), 0x20_0000, 0).kind());
    }

    @Test
    void misalignedAndOutOfRangeRequestsNeverReachTheKernel() {
        RecordingPosix posix = host(GROUP);
        try (VfioType1Iommu iommu = VfioType1Iommu.open(posix, root, List.of(GROUP))) {
            posix.clearCalls();
            IommuException iova = assertThrows(IommuException.class,
                    () -> iommu.map(AddressRange.of(0x800, 0x1000), HostAddress.of(0x10000), DmaPermissions.READ));
            assertEquals(IommuException.Kind.MISALIGNED, iova.kind());
            assertTrue(iova.getMessage().contains("IOVA base"), iova.getMessage());
            IommuException size = assertThrows(IommuException.class,
                    () -> iommu.map(AddressRange.of(0x1000, 0x1800), HostAddress.of(0x10000), DmaPermissions.READ));
            assertTrue(size.getMessage().contains("size 0x1800"), size.getMessage());
            IommuException host = assertThrows(IommuException.class,
                    () -> iommu.map(AddressRange.of(0x1000, 0x1000), HostAddress.of(0x10010), DmaPermissions.READ));
            assertTrue(host.getMessage().contains("host address"), host.getMessage());
            IommuException hole = assertThrows(IommuException.class, () -> iommu.map(
                    AddressRange.of(0xfee0_0000L, 0x1000), HostAddress.of(0x10000), DmaPermissions.READ));
            assertEquals(IommuException.Kind.OUT_OF_RANGE, hole.kind(), "the MSI window is outside the ranges");
            assertEquals(List.of(), posix.calls());
        }
    }

    @Test
    void partialUnmapIsRefusedWithoutAKernelCall() {
        RecordingPosix posix = host(GROUP);
        try (VfioType1Iommu iommu = VfioType1Iommu.open(posix, root, List.of(GROUP))) {
            iommu.map(AddressRange.of(0x20_0000, 0x20_0000), HostAddress.of(0x7f00_0000_0000L),
                    DmaPermissions.READ_WRITE);
            posix.clearCalls();
            IommuException e = assertThrows(IommuException.class,
                    () -> iommu.unmap(AddressRange.of(0x30_0000, 0x20_0000)));
            assertEquals(IommuException.Kind.PARTIAL_UNMAP, e.kind());
            assertEquals(List.of(), posix.calls());
            assertEquals(1, iommu.mappings().size());
            assertEquals(List.of(), iommu.unmap(AddressRange.of(0x100_0000, 0x1000)), "nothing there");
            assertEquals(List.of(), posix.calls());
        }
    }

    @Test
    void unmapFailureKeepsTheMappingAndNamesTheIoctl() {
        RecordingPosix posix = host(GROUP);
        try (VfioType1Iommu iommu = VfioType1Iommu.open(posix, root, List.of(GROUP))) {
            AddressRange range = AddressRange.of(0x20_0000, 0x20_0000);
            iommu.map(range, HostAddress.of(0x7f00_0000_0000L), DmaPermissions.READ_WRITE);
            posix.failOnce("VFIO_IOMMU_UNMAP_DMA", Errno.EBUSY);
            IommuException e = assertThrows(IommuException.class, () -> iommu.unmap(range));
            assertEquals(IommuException.Kind.NATIVE, e.kind());
            assertTrue(e.getMessage().contains("ioctl(VFIO_IOMMU_UNMAP_DMA) failed: EBUSY (16)"), e.getMessage());
            assertEquals(1, iommu.mappings().size());
            assertEquals(0x20_0000, iommu.pinnedBytes());
        }
    }

    @Test
    void mappingsAndPinnedBytesFollowMapAndUnmap() {
        RecordingPosix posix = host(GROUP);
        try (VfioType1Iommu iommu = VfioType1Iommu.open(posix, root, List.of(GROUP))) {
            iommu.map(AddressRange.of(0x40_0000, 0x20_0000), HostAddress.of(0x7f00_0040_0000L), DmaPermissions.READ);
            iommu.map(AddressRange.of(0, 0x10_0000), HostAddress.of(0x7f00_0000_0000L), DmaPermissions.READ_WRITE);
            assertEquals(List.of(0L, 0x40_0000L), iommu.mappings().stream().map(m -> m.iova().base()).toList());
            assertEquals(0x30_0000, iommu.pinnedBytes());
            List<DmaMapping> gone = iommu.unmap(AddressRange.of(0, 0x100_0000));
            assertEquals(List.of(0L, 0x40_0000L), gone.stream().map(m -> m.iova().base()).toList());
            assertEquals(0, iommu.pinnedBytes());
            assertEquals(2, posix.ioctls("VFIO_IOMMU_UNMAP_DMA").size());
        }
    }

    @Test
    void closeUnmapsWhatIsLeftAndIsIdempotent() {
        RecordingPosix posix = host(GROUP);
        VfioType1Iommu iommu = VfioType1Iommu.open(posix, root, List.of(GROUP));
        iommu.map(AddressRange.of(0x40_0000, 0x20_0000), HostAddress.of(0x7f00_0040_0000L), DmaPermissions.READ);
        posix.clearCalls();
        iommu.close();
        assertEquals(List.of("VFIO_IOMMU_UNMAP_DMA", "VFIO_GROUP_UNSET_CONTAINER", "close 101", "close 100"),
                posix.trace());
        posix.clearCalls();
        iommu.close();
        assertEquals(List.of(), posix.calls());
        IommuException closed = assertThrows(IommuException.class, () -> iommu.map(AddressRange.of(0, 0x1000),
                HostAddress.of(0x1000), DmaPermissions.READ));
        assertEquals(IommuException.Kind.CLOSED, closed.kind());
    }

    @Test
    void groupsAttachAndDetachAfterOpen() {
        RecordingPosix posix = host(GROUP, 13);
        try (VfioType1Iommu iommu = VfioType1Iommu.open(posix, root, List.of(GROUP))) {
            posix.clearCalls();
            iommu.attachGroup(13);
            assertEquals(List.of("open " + path("13"), "VFIO_GROUP_GET_STATUS", "VFIO_GROUP_SET_CONTAINER",
                    "VFIO_IOMMU_GET_INFO", "VFIO_IOMMU_GET_INFO"), posix.trace(), "SET_IOMMU only for the first");
            iommu.map(AddressRange.of(0, 0x1000), HostAddress.of(0x1000), DmaPermissions.READ);
            iommu.detachGroup(13);
            assertEquals(List.of(GROUP), iommu.groupIds());
            assertThrows(IllegalStateException.class, () -> iommu.detachGroup(GROUP), "mappings remain");
            iommu.unmap(AddressRange.of(0, 0x1000));
            iommu.detachGroup(GROUP);
            assertEquals(List.of(), iommu.groupIds());
            assertThrows(IllegalStateException.class, iommu::info);
        }
        assertEquals(Map.of(), posix.openFds());
    }
}
