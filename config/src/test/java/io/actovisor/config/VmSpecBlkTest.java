package io.actovisor.config;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import com.typesafe.config.ConfigFactory;
import java.util.List;
import java.util.Optional;
import java.util.OptionalLong;
import org.junit.jupiter.api.Test;

/** {@code devices.blk}: its size, its MMIO region and the container its DMA goes through, each refused by name. */
class VmSpecBlkTest {
    private static final String BLK_VM = "actovisor.vm { memory = [ { name = ram, base = 0, size = 64 MiB },"
            + " { name = blk, kind = mmio, base = \"0xd0002000\", size = 4 KiB, device = blk } ],"
            + " vfio.containers = [ { name = c, backend = pinned, groups = [ { id = g1 } ] } ],"
            + " devices.blk { enabled = true, size-mib = %s, container = \"%s\", mmio-base = \"%s\" } }";

    private static VmSpec parse(String hocon) {
        return VmSpecParser.parse(ConfigFactory.parseString(hocon), OptionalLong.of(1L << 30));
    }

    private static void refused(String hocon, String path, String value, String message) {
        assertEquals(List.of(new ConfigError(path, value, message)),
                assertThrows(ConfigValidationException.class, () -> parse(hocon)).errors().stream()
                        .map(e -> new ConfigError(e.path(), e.value(), e.message())).toList());
    }

    @Test
    void aBlkDeviceHasASizeARegionAndOptionallyAContainer() {
        assertEquals(Optional.of(new VmSpec.Blk(1024L << 20, 0xd0002000L, Optional.of("c"))),
                parse(BLK_VM.formatted("1024", "c", "0xd0002000")).devices().blk());
        assertEquals(Optional.of(new VmSpec.Blk(1L << 20, 0xd0002000L, Optional.empty())),
                parse(BLK_VM.formatted("1", "", "0xd0002000")).devices().blk());
        assertEquals(Optional.empty(), parse("actovisor.vm { }").devices().blk());
    }

    @Test
    void badBlkFieldsAreRefusedByName() {
        refused(BLK_VM.formatted("1025", "c", "0xd0002000"), "actovisor.vm.devices.blk.size-mib", "1025",
                "must be between 1 and 1024");
        refused(BLK_VM.formatted("0", "c", "0xd0002000"), "actovisor.vm.devices.blk.size-mib", "0",
                "must be between 1 and 1024");
        refused(BLK_VM.formatted("64", "d", "0xd0002000"), "actovisor.vm.devices.blk.container", "d",
                "no VFIO container with this name is configured in vfio.containers (empty: the device reaches "
                        + "guest memory directly)");
        refused(BLK_VM.formatted("64", "c", "0xd0003000"), "actovisor.vm.devices.blk.mmio-base", "0xd0003000",
                "no mmio region with device = \"blk\" starts there; add one to memory");
        refused(BLK_VM.formatted("64", "c", "0xd0002000").replace("size-mib", "sise-mib"),
                "actovisor.vm.devices.blk.sise-mib", "64", "unknown key; did you mean 'size-mib'?");
    }
}
