package io.actovisor.kernel.vfio;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Group discovery from sysfs, on a directory tree laid out like /sys (links as the kernel makes them). */
class VfioSysfsTest {
    @TempDir
    Path sys;

    private void device(String address, int group, String driver) throws Exception {
        Path groups = sys.resolve("kernel/iommu_groups/" + group + "/devices");
        Path devices = sys.resolve("bus/pci/devices");
        Path node = sys.resolve("devices/pci0000:00/" + address);
        Files.createDirectories(node);
        Files.createDirectories(groups);
        Files.createDirectories(devices);
        Files.createDirectories(sys.resolve("bus/pci/drivers/" + driver));
        Files.createSymbolicLink(devices.resolve(address), node);
        Files.createSymbolicLink(groups.resolve(address), node);
        Files.createSymbolicLink(node.resolve("iommu_group"), sys.resolve("kernel/iommu_groups/" + group));
        if (!driver.isEmpty()) {
            Files.createSymbolicLink(node.resolve("driver"), sys.resolve("bus/pci/drivers/" + driver));
        }
    }

    @Test
    void findsTheGroupAndItsDevicesAndDrivers() throws Exception {
        device("0000:03:00.0", 12, "vfio-pci");
        device("0000:03:00.1", 12, "snd_hda_intel");
        device("0000:00:04.0", 5, "");
        assertEquals(Optional.of(12), Vfio.groupOf(sys, "0000:03:00.0"));
        assertEquals(Optional.empty(), Vfio.groupOf(sys, "0000:09:00.0"));
        assertEquals(List.of("0000:03:00.0", "0000:03:00.1"), Vfio.groupDevices(sys, 12));
        assertEquals(List.of("0000:03:00.0=vfio-pci", "0000:03:00.1=snd_hda_intel"), Vfio.groupDrivers(sys, 12));
        assertEquals(List.of("0000:00:04.0=(none)"), Vfio.groupDrivers(sys, 5));
        VfioException missing = assertThrows(VfioException.class, () -> Vfio.groupDevices(sys, 99));
        assertEquals(VfioException.Reason.GROUP_MISSING, missing.reason());
    }
}
