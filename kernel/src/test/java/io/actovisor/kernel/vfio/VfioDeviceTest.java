package io.actovisor.kernel.vfio;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.memory.AddressRange;
import io.actovisor.memory.sys.Mman;
import io.actovisor.memory.sys.NativeBuffer;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A vfio-pci device through the recording double, shaped like QEMU's {@code edu} device (1234:11e8): info, region
 * info (with a sparse-mmap capability behind an argsz retry), BAR0 registers and config space by pread/pwrite at
 * the region offsets, bus mastering, reset and mmap.
 */
class VfioDeviceTest {
    private static final int GROUP = 7;
    private static final String NAME = "0000:00:04.0";
    /** vfio-pci places region i at i << 40 in the device fd (VFIO_PCI_INDEX_TO_OFFSET). */
    private static final long CONFIG = (long) VfioAbi.Pci.CONFIG_REGION_INDEX << 40;
    private static final long BAR2 = 2L << 40;

    @TempDir
    Path root;

    private RecordingPosix posix;
    private VfioContainer container;
    private VfioGroup group;
    private int deviceFlags = VfioAbi.DeviceInfo.FLAG_PCI | VfioAbi.DeviceInfo.FLAG_RESET;

    @BeforeEach
    void attach() {
        posix = ScriptedVfioHost.create(root, GROUP);
        posix.on("VFIO_GROUP_GET_DEVICE_FD", (call, arg) -> posix.newFd("vfio-device:" + call.inString()));
        posix.on("VFIO_DEVICE_GET_INFO", (call, arg) -> {
            arg.orElseThrow().putInt(VfioAbi.DeviceInfo.FLAGS, deviceFlags)
                    .putInt(VfioAbi.DeviceInfo.NUM_REGIONS, VfioAbi.Pci.NUM_REGIONS)
                    .putInt(VfioAbi.DeviceInfo.NUM_IRQS, 5);
            return 0;
        });
        posix.on("VFIO_DEVICE_GET_REGION_INFO", (call, arg) -> {
            regionInfo(arg.orElseThrow());
            return 0;
        });
        posix.on("VFIO_DEVICE_GET_IRQ_INFO", (call, arg) -> {
            NativeBuffer irq = arg.orElseThrow();
            switch (irq.getInt(VfioAbi.IrqInfo.INDEX)) {
                case VfioAbi.Pci.INTX_IRQ_INDEX -> irq.putInt(VfioAbi.IrqInfo.FLAGS, VfioAbi.IrqInfo.FLAG_EVENTFD
                        | VfioAbi.IrqInfo.FLAG_MASKABLE | VfioAbi.IrqInfo.FLAG_AUTOMASKED).putInt(VfioAbi.IrqInfo.COUNT, 1);
                case VfioAbi.Pci.MSI_IRQ_INDEX -> irq.putInt(VfioAbi.IrqInfo.FLAGS, VfioAbi.IrqInfo.FLAG_EVENTFD
                        | VfioAbi.IrqInfo.FLAG_NORESIZE).putInt(VfioAbi.IrqInfo.COUNT, 1);
                default -> irq.putInt(VfioAbi.IrqInfo.FLAGS, 0).putInt(VfioAbi.IrqInfo.COUNT, 0);
            }
            return 0;
        });
        container = VfioContainer.open(posix, root);
        group = VfioGroup.open(posix, root, GROUP);
        container.attach(group);
        posix.clearCalls();
    }

    /** BAR0: 1 MiB, mmap-able; BAR2: 64 KiB with a sparse-mmap capability; config: 256 bytes, no mmap. */
    private static void regionInfo(NativeBuffer info) {
        int index = info.getInt(VfioAbi.RegionInfo.INDEX);
        int rw = VfioAbi.RegionInfo.FLAG_READ | VfioAbi.RegionInfo.FLAG_WRITE;
        info.putLong(VfioAbi.RegionInfo.OFFSET, (long) index << 40);
        switch (index) {
            case 0 -> info.putInt(VfioAbi.RegionInfo.FLAGS, rw | VfioAbi.RegionInfo.FLAG_MMAP)
                    .putLong(VfioAbi.RegionInfo.REGION_SIZE, 1 << 20);
            case 2 -> {
                int needed = VfioAbi.RegionInfo.SIZE + VfioAbi.SparseMmapCap.SIZE + 2 * VfioAbi.SparseMmapArea.SIZE;
                info.putInt(VfioAbi.RegionInfo.FLAGS, rw | VfioAbi.RegionInfo.FLAG_MMAP | VfioAbi.RegionInfo.FLAG_CAPS)
                        .putLong(VfioAbi.RegionInfo.REGION_SIZE, 0x1_0000);
                if (info.getInt(VfioAbi.RegionInfo.ARGSZ) < needed) {
                    info.putInt(VfioAbi.RegionInfo.ARGSZ, needed).putInt(VfioAbi.RegionInfo.CAP_OFFSET, 0);
                    return;
                }
                int cap = VfioAbi.RegionInfo.SIZE;
                info.putInt(VfioAbi.RegionInfo.CAP_OFFSET, cap)
                        .putShort(cap + VfioAbi.CapHeader.ID, (short) VfioAbi.RegionInfo.CAP_SPARSE_MMAP)
                        .putShort(cap + VfioAbi.CapHeader.VERSION, (short) 1)
                        .putInt(cap + VfioAbi.SparseMmapCap.NR_AREAS, 2);
                int area = cap + VfioAbi.SparseMmapCap.AREAS;
                info.putLong(area + VfioAbi.SparseMmapArea.OFFSET, 0)
                        .putLong(area + VfioAbi.SparseMmapArea.AREA_SIZE, 0x8000)
                        .putLong(area + VfioAbi.SparseMmapArea.SIZE + VfioAbi.SparseMmapArea.OFFSET, 0xc000)
                        .putLong(area + VfioAbi.SparseMmapArea.SIZE + VfioAbi.SparseMmapArea.AREA_SIZE, 0x4000);
            }
            case VfioAbi.Pci.CONFIG_REGION_INDEX -> info.putInt(VfioAbi.RegionInfo.FLAGS, rw)
                    .putLong(VfioAbi.RegionInfo.REGION_SIZE, 256);
            default -> info.putInt(VfioAbi.RegionInfo.FLAGS, 0).putLong(VfioAbi.RegionInfo.REGION_SIZE, 0);
        }
    }

    @Test
    void getDeviceFdPassesTheNameAsACString() {
        VfioDevice device = group.openDevice(NAME);
        RecordingPosix.IoctlCall call = posix.ioctls("VFIO_GROUP_GET_DEVICE_FD").get(0);
        assertEquals(group.fd(), call.fd());
        assertEquals(NAME, call.inString());
        assertEquals(Optional.of("vfio-device:" + NAME), posix.fdTarget(device.fd()));
        VfioDeviceInfo info = device.info();
        assertTrue(info.pci());
        assertTrue(info.resettable());
        assertEquals(9, info.numRegions());
        assertEquals(VfioAbi.DeviceInfo.SIZE,
                posix.ioctls("VFIO_DEVICE_GET_INFO").get(0).inInt(VfioAbi.DeviceInfo.ARGSZ));
    }

    @Test
    void openingADeviceNeedsAnAttachedGroup() {
        container.detach(group);
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> group.openDevice(NAME));
        assertTrue(e.getMessage().contains("attached"), e.getMessage());
    }

    @Test
    void regionInfoGrowsToTheArgszTheKernelAsksForAndReadsSparseAreas() {
        VfioDevice device = group.openDevice(NAME);
        VfioRegionInfo bar2 = device.regionInfo(2);
        List<RecordingPosix.IoctlCall> calls = posix.ioctls("VFIO_DEVICE_GET_REGION_INFO");
        assertEquals(2, calls.size());
        assertEquals(VfioAbi.RegionInfo.SIZE, calls.get(0).inInt(VfioAbi.RegionInfo.ARGSZ));
        assertEquals(80, calls.get(1).inInt(VfioAbi.RegionInfo.ARGSZ));
        assertEquals(2, calls.get(0).inInt(VfioAbi.RegionInfo.INDEX));
        assertEquals(2, calls.get(1).inInt(VfioAbi.RegionInfo.INDEX));
        assertEquals(BAR2, bar2.offset());
        assertEquals(0x1_0000, bar2.size());
        assertEquals(Optional.of(List.of(AddressRange.of(0, 0x8000), AddressRange.of(0xc000, 0x4000))),
                bar2.sparseMmap());
        device.regionInfo(2);
        assertEquals(2, posix.ioctls("VFIO_DEVICE_GET_REGION_INFO").size(), "region info is read once");
    }

    @Test
    void enableBusMasterSetsTheCommandBitsInConfigSpace() {
        VfioDevice device = group.openDevice(NAME);
        posix.poke(device.fd(), CONFIG + VfioAbi.Pci.VENDOR_ID, new byte[] {0x34, 0x12, (byte) 0xe8, 0x11});
        assertEquals(0x1234, device.readConfig(VfioAbi.Pci.VENDOR_ID, 2));
        assertEquals(0x11e8, device.readConfig(VfioAbi.Pci.DEVICE_ID, 2));
        posix.clearCalls();

        assertEquals(0, device.enableBusMaster());
        assertEquals(List.of("pread " + device.fd() + " @0x" + Long.toHexString(CONFIG + 4),
                "pwrite " + device.fd() + " @0x" + Long.toHexString(CONFIG + 4)), posix.trace());
        RecordingPosix.Pwrite write = (RecordingPosix.Pwrite) posix.calls().get(1);
        assertArrayEquals(new byte[] {0x06, 0x00}, write.data());

        posix.clearCalls();
        assertEquals(0x6, device.enableBusMaster());
        assertEquals(1, posix.calls().size(), "already enabled: read only");
    }

    @Test
    void bar0RegistersArePreadAndPwriteAtTheRegionOffset() {
        VfioDevice device = group.openDevice(NAME);
        posix.poke(device.fd(), 0, new byte[] {(byte) 0xed, 0, 0, 1}); // edu identification 0x010000ed
        assertEquals(0x010000edL, device.read(VfioAbi.Pci.BAR0_REGION_INDEX, 0, 4));
        device.write(VfioAbi.Pci.BAR0_REGION_INDEX, 0x80, 8, 0x4_0000L); // edu DMA source address
        assertArrayEquals(new byte[] {0, 0, 4, 0, 0, 0, 0, 0}, posix.peek(device.fd(), 0x80, 8));
        byte[] block = {1, 2, 3, 4, 5};
        device.write(VfioAbi.Pci.BAR0_REGION_INDEX, 0x4_0000, block);
        byte[] back = new byte[5];
        device.read(VfioAbi.Pci.BAR0_REGION_INDEX, 0x4_0000, back);
        assertArrayEquals(block, back);
    }

    @Test
    void accessesOutsideARegionAreRefusedBeforeAnySystemCall() {
        VfioDevice device = group.openDevice(NAME);
        device.regionInfo(VfioAbi.Pci.CONFIG_REGION_INDEX);
        posix.clearCalls();
        IllegalArgumentException past = assertThrows(IllegalArgumentException.class,
                () -> device.readConfig(254, 4));
        assertTrue(past.getMessage().contains("offset 254") && past.getMessage().contains("256 bytes"),
                past.getMessage());
        assertThrows(IllegalArgumentException.class, () -> device.read(0, 0, 3), "width 3");
        VfioException absent = assertThrows(VfioException.class, () -> device.read(4, 0, 4));
        assertEquals(VfioException.Reason.UNSUPPORTED, absent.reason());
        assertThrows(IllegalArgumentException.class, () -> device.regionInfo(9));
        assertEquals(List.of("VFIO_DEVICE_GET_REGION_INFO"), posix.trace(), "only region 4's info was read");
    }

    @Test
    void resetOnlyWhenTheDeviceSaysItCan() {
        VfioDevice device = group.openDevice(NAME);
        device.reset();
        assertEquals(device.fd(), posix.ioctls("VFIO_DEVICE_RESET").get(0).fd());

        deviceFlags = VfioAbi.DeviceInfo.FLAG_PCI;
        VfioDevice other = group.openDevice("0000:00:05.0");
        VfioException e = assertThrows(VfioException.class, other::reset);
        assertEquals(VfioException.Reason.UNSUPPORTED, e.reason());
        assertEquals(1, posix.ioctls("VFIO_DEVICE_RESET").size());
    }

    @Test
    void mmapFollowsTheRegionFlagsAndSparseAreas() {
        VfioDevice device = group.openDevice(NAME);
        VfioRegionMapping bar0 = device.map(VfioAbi.Pci.BAR0_REGION_INDEX);
        RecordingPosix.Mmap mmap = posix.calls().stream().filter(RecordingPosix.Mmap.class::isInstance)
                .map(RecordingPosix.Mmap.class::cast).findFirst().orElseThrow();
        assertEquals(device.fd(), mmap.fd());
        assertEquals(0, mmap.offset());
        assertEquals(1 << 20, mmap.length());
        assertEquals(Mman.PROT_READ | Mman.PROT_WRITE, mmap.prot());
        assertEquals(Mman.MAP_SHARED, mmap.flags());
        bar0.buffer().putInt(0x10, 42);
        assertEquals(42, bar0.buffer().getInt(0x10));

        VfioException config = assertThrows(VfioException.class, () -> device.map(VfioAbi.Pci.CONFIG_REGION_INDEX));
        assertEquals(VfioException.Reason.UNSUPPORTED, config.reason());
        VfioException msix = assertThrows(VfioException.class, () -> device.map(2, 0x8000, 0x4000));
        assertTrue(msix.getMessage().contains("may be mmap'ed only in"), msix.getMessage());
        VfioRegionMapping area = device.map(2, 0xc000, 0x4000);
        assertEquals(BAR2 + 0xc000, ((RecordingPosix.Mmap) posix.calls().stream()
                .filter(RecordingPosix.Mmap.class::isInstance).toList().get(1)).offset());
        assertThrows(IllegalArgumentException.class, () -> device.map(2, 0x100, 0x1000), "misaligned");

        device.close();
        assertTrue(posix.liveMappings().isEmpty(), "device close unmaps its regions");
        area.close(); // idempotent after the device closed it
        assertThrows(IllegalStateException.class, bar0::buffer);
    }

    @Test
    void closingTheGroupClosesDevicesBeforeUnsettingTheContainer() {
        VfioDevice device = group.openDevice(NAME);
        posix.clearCalls();
        group.close();
        assertEquals(List.of("close " + device.fd(), "VFIO_GROUP_UNSET_CONTAINER", "close " + group.fd()),
                posix.trace());
        container.close();
        assertEquals(Map.of(), posix.openFds());
        device.close();
        assertEquals(4, posix.calls().size(), "closing again issues nothing");
    }

    @Test
    void msiIsRoutedToAnEventfdAndDisabledOnClose() {
        VfioDevice device = group.openDevice(NAME);
        assertTrue(device.irqInfo(VfioAbi.Pci.INTX_IRQ_INDEX).automasked());
        posix.clearCalls();
        VfioInterrupts msi = device.enableInterrupts(VfioAbi.Pci.MSI_IRQ_INDEX, 1);
        int eventfd = msi.eventfds().get(0);
        assertEquals(List.of("VFIO_DEVICE_GET_IRQ_INFO", "eventfd " + eventfd, "VFIO_DEVICE_SET_IRQS"),
                posix.trace());
        assertEquals(VfioAbi.Eventfd.EFD_CLOEXEC, ((RecordingPosix.Eventfd) posix.calls().get(1)).flags());
        RecordingPosix.IoctlCall set = posix.ioctls("VFIO_DEVICE_SET_IRQS").get(0);
        assertEquals(device.fd(), set.fd());
        assertEquals(VfioAbi.IrqSet.SIZE + 4, set.inInt(VfioAbi.IrqSet.ARGSZ));
        assertEquals(VfioAbi.IrqSet.DATA_EVENTFD | VfioAbi.IrqSet.ACTION_TRIGGER, set.inInt(VfioAbi.IrqSet.FLAGS));
        assertEquals(VfioAbi.Pci.MSI_IRQ_INDEX, set.inInt(VfioAbi.IrqSet.INDEX));
        assertEquals(0, set.inInt(VfioAbi.IrqSet.START));
        assertEquals(1, set.inInt(VfioAbi.IrqSet.COUNT));
        assertEquals(eventfd, set.inInt(VfioAbi.IrqSet.DATA));

        posix.signal(eventfd, 2);
        assertEquals(2, msi.await(0));
        assertThrows(IllegalArgumentException.class, () -> msi.await(1));

        posix.clearCalls();
        device.close();
        assertEquals(List.of("VFIO_DEVICE_SET_IRQS", "close " + eventfd, "close " + device.fd()), posix.trace());
        RecordingPosix.IoctlCall disable = posix.ioctls("VFIO_DEVICE_SET_IRQS").get(0);
        assertEquals(VfioAbi.IrqSet.DATA_NONE | VfioAbi.IrqSet.ACTION_TRIGGER, disable.inInt(VfioAbi.IrqSet.FLAGS));
        assertEquals(0, disable.inInt(VfioAbi.IrqSet.COUNT));
        msi.close();
        assertEquals(3, posix.calls().size(), "closing again issues nothing");
    }

    @Test
    void aRefusedSetIrqsClosesTheEventfds() {
        VfioDevice device = group.openDevice(NAME);
        posix.failOnce("VFIO_DEVICE_SET_IRQS", io.actovisor.memory.sys.Errno.EINVAL);
        VfioException e = assertThrows(VfioException.class,
                () -> device.enableInterrupts(VfioAbi.Pci.INTX_IRQ_INDEX, 1));
        assertTrue(e.getMessage().contains("ioctl(VFIO_DEVICE_SET_IRQS) failed: EINVAL (22)"), e.getMessage());
        assertEquals(Map.of(), posix.openFds().entrySet().stream()
                .filter(en -> en.getValue().contains("eventfd")).collect(java.util.stream.Collectors.toMap(
                        Map.Entry::getKey, Map.Entry::getValue)));
        assertThrows(IllegalArgumentException.class, () -> device.enableInterrupts(VfioAbi.Pci.MSI_IRQ_INDEX, 2));
        VfioException none = assertThrows(VfioException.class,
                () -> device.enableInterrupts(VfioAbi.Pci.MSIX_IRQ_INDEX, 1));
        assertEquals(VfioException.Reason.UNSUPPORTED, none.reason());
    }

    @Test
    void intxIsUnmaskedWithDataNone() {
        VfioDevice device = group.openDevice(NAME);
        device.unmaskIntx();
        RecordingPosix.IoctlCall unmask = posix.ioctls("VFIO_DEVICE_SET_IRQS").get(0);
        assertEquals(VfioAbi.IrqSet.DATA_NONE | VfioAbi.IrqSet.ACTION_UNMASK, unmask.inInt(VfioAbi.IrqSet.FLAGS));
        assertEquals(VfioAbi.Pci.INTX_IRQ_INDEX, unmask.inInt(VfioAbi.IrqSet.INDEX));
        assertEquals(1, unmask.inInt(VfioAbi.IrqSet.COUNT));
    }
}
