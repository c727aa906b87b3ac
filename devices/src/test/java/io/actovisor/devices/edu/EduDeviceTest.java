package io.actovisor.devices.edu;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.kernel.vfio.RecordingPosix;
import io.actovisor.kernel.vfio.ScriptedVfioHost;
import io.actovisor.kernel.vfio.VfioAbi;
import io.actovisor.kernel.vfio.VfioContainer;
import io.actovisor.kernel.vfio.VfioDevice;
import io.actovisor.kernel.vfio.VfioGroup;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The edu driver against a recorded device fd (the real device runs in NestedVfioTest): what it checks before it
 * drives a device, the register writes of a transfer, and the limits it enforces before any system call.
 */
class EduDeviceTest {
    private static final int GROUP = 3;
    private static final long CONFIG = (long) VfioAbi.Pci.CONFIG_REGION_INDEX << 40;

    @TempDir
    Path root;

    private RecordingPosix posix;
    private VfioDevice device;

    @BeforeEach
    void open() {
        posix = ScriptedVfioHost.create(root, GROUP);
        posix.on("VFIO_GROUP_GET_DEVICE_FD", (call, arg) -> posix.newFd("vfio-device:" + call.inString()));
        posix.on("VFIO_DEVICE_GET_INFO", (call, arg) -> {
            arg.orElseThrow().putInt(VfioAbi.DeviceInfo.FLAGS, VfioAbi.DeviceInfo.FLAG_PCI)
                    .putInt(VfioAbi.DeviceInfo.NUM_REGIONS, VfioAbi.Pci.NUM_REGIONS).putInt(VfioAbi.DeviceInfo.NUM_IRQS, 5);
            return 0;
        });
        posix.on("VFIO_DEVICE_GET_REGION_INFO", (call, arg) -> {
            var info = arg.orElseThrow();
            int index = info.getInt(VfioAbi.RegionInfo.INDEX);
            int rw = VfioAbi.RegionInfo.FLAG_READ | VfioAbi.RegionInfo.FLAG_WRITE;
            info.putLong(VfioAbi.RegionInfo.OFFSET, (long) index << 40);
            switch (index) {
                case 0 -> info.putInt(VfioAbi.RegionInfo.FLAGS, rw).putLong(VfioAbi.RegionInfo.REGION_SIZE, 1 << 20);
                case VfioAbi.Pci.CONFIG_REGION_INDEX -> info.putInt(VfioAbi.RegionInfo.FLAGS, rw)
                        .putLong(VfioAbi.RegionInfo.REGION_SIZE, 256);
                default -> info.putInt(VfioAbi.RegionInfo.FLAGS, 0).putLong(VfioAbi.RegionInfo.REGION_SIZE, 0);
            }
            return 0;
        });
        VfioContainer container = VfioContainer.open(posix, root);
        VfioGroup group = VfioGroup.open(posix, root, GROUP);
        container.attach(group);
        device = group.openDevice("0000:00:02.0");
        posix.poke(device.fd(), CONFIG, new byte[] {0x34, 0x12, (byte) 0xe8, 0x11});
        posix.poke(device.fd(), EduDevice.REG_ID, new byte[] {(byte) 0xed, 0, 0, 1});
    }

    @Test
    void attachChecksThePciIdsAndTheIdentificationRegister() {
        assertEquals(0x010000ed, EduDevice.attach(device, Duration.ofSeconds(1)).identification());
        posix.poke(device.fd(), CONFIG, new byte[] {(byte) 0x86, (byte) 0x80, 0x0e, 0x10});
        IllegalArgumentException other = assertThrows(IllegalArgumentException.class,
                () -> EduDevice.attach(device, Duration.ofSeconds(1)));
        assertTrue(other.getMessage().contains("8086:100e") && other.getMessage().contains("1234:11e8"),
                other.getMessage());
        posix.poke(device.fd(), CONFIG, new byte[] {0x34, 0x12, (byte) 0xe8, 0x11});
        posix.poke(device.fd(), EduDevice.REG_ID, new byte[] {0, 0, 0, 0});
        IllegalArgumentException id = assertThrows(IllegalArgumentException.class,
                () -> EduDevice.attach(device, Duration.ofSeconds(1)));
        assertTrue(id.getMessage().contains("0xed"), id.getMessage());
    }

    @Test
    void aTransferWritesSourceDestinationCountAndCommandAndTimesOutWhileBusy() {
        EduDevice edu = EduDevice.attach(device, Duration.ofMillis(50));
        posix.clearCalls();
        // The recorded fd keeps what is written: the start bit stays set, as on a device that never finishes.
        IllegalStateException hung = assertThrows(IllegalStateException.class,
                () -> edu.copyToDevice(0x10_8000, 16, 2048));
        assertTrue(hung.getMessage().contains("did not finish a 2048-byte DMA within 50 ms"), hung.getMessage());
        List<String> writes = posix.trace().stream().filter(t -> t.startsWith("pwrite")).toList();
        assertEquals(List.of("pwrite " + device.fd() + " @0x80", "pwrite " + device.fd() + " @0x88",
                "pwrite " + device.fd() + " @0x90", "pwrite " + device.fd() + " @0x98"), writes);
        assertArrayEquals(new byte[] {0, (byte) 0x80, 0x10, 0}, posix.peek(device.fd(), EduDevice.REG_DMA_SOURCE, 4));
        assertArrayEquals(new byte[] {0x10, 0, 4, 0}, posix.peek(device.fd(), EduDevice.REG_DMA_DESTINATION, 4));
        assertArrayEquals(new byte[] {0, 8, 0, 0}, posix.peek(device.fd(), EduDevice.REG_DMA_COUNT, 4));
        IllegalStateException busy = assertThrows(IllegalStateException.class,
                () -> edu.copyFromDevice(0, 0x1000, 8));
        assertTrue(busy.getMessage().contains("still running"), busy.getMessage());
    }

    @Test
    void transfersOutsideTheBufferOrTheDmaMaskAreRefusedBeforeAnySystemCall() {
        EduDevice edu = EduDevice.attach(device, Duration.ofSeconds(1));
        posix.clearCalls();
        IllegalArgumentException end = assertThrows(IllegalArgumentException.class,
                () -> edu.copyToDevice(0x1000, 0, 4096));
        assertTrue(end.getMessage().contains("4096 bytes") && end.getMessage().contains("byte 4095"),
                end.getMessage());
        assertThrows(IllegalArgumentException.class, () -> edu.copyFromDevice(-1, 0x1000, 8));
        assertThrows(IllegalArgumentException.class, () -> edu.copyToDevice(0x1000, 0, 0));
        IllegalArgumentException mask = assertThrows(IllegalArgumentException.class,
                () -> edu.copyFromDevice(0, 0x1000_0000L - 4, 8));
        assertTrue(mask.getMessage().contains("0xffffffc") && mask.getMessage().contains("28-bit"),
                mask.getMessage());
        assertEquals(List.of(), posix.trace());
    }
}
