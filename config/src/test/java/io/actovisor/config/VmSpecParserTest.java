package io.actovisor.config;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.ConfigFactory;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.RegionKind;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.OptionalLong;
import org.junit.jupiter.api.Test;

/** VM definitions: defaults, the embedded default VM, round trips, and every kind of error with path and value. */
class VmSpecParserTest {
    private static VmSpec parse(String hocon) {
        return VmSpecParser.parse(ConfigFactory.parseString(hocon), OptionalLong.of(1L << 30));
    }

    private static List<ConfigError> errors(String hocon) {
        return assertThrows(ConfigValidationException.class, () -> parse(hocon)).errors();
    }

    private static ConfigError only(String hocon) {
        List<ConfigError> errors = errors(hocon);
        assertEquals(1, errors.size(), errors.toString());
        return errors.get(0);
    }

    @Test
    void theDefaultsMakeAMinimalVm() {
        VmSpec spec = parse("actovisor.vm { name = tiny }");
        assertEquals("tiny", spec.name());
        assertEquals(1, spec.vcpus());
        assertEquals(List.of(new VmSpec.Region("ram", RegionKind.RAM, AddressRange.of(0, 64L << 20),
                java.util.Optional.of(VmSpec.Backing.ANONYMOUS), false, java.util.Optional.empty())), spec.memory());
        assertTrue(spec.firmware().bundled());
        assertEquals(List.of(), spec.containers());
        assertEquals(false, spec.balloon().enabled());
        assertEquals("127.0.0.1", spec.api().host());
    }

    @Test
    void theEmbeddedDefaultVmIsValidAndShippedAsTheExample() throws IOException {
        VmSpec spec = VmSpecParser.defaultVm();
        assertEquals("default", spec.name());
        assertEquals(VmSpec.Backend.PINNED, spec.containers().get(0).backend());
        assertTrue(spec.balloon().enabled());
        assertEquals("dma0", spec.devices().dma().orElseThrow().group());
        Path example = Path.of(System.getenv().getOrDefault("ACTOVISOR_PROJECT_ROOT", "..")).resolve(
                "docs/examples/default.conf");
        try (InputStream in = VmSpecParser.class.getResourceAsStream("default-vm.conf")) {
            assertEquals(new String(in.readAllBytes()), Files.readString(example),
                    "docs/examples/default.conf must be the embedded default VM");
        }
    }

    @Test
    void renderingRoundTrips() {
        VmSpec rich = parse("""
                actovisor.vm {
                  name = rich, vcpus = 4
                  memory = [
                    { name = low, base = 0, size = 32 MiB, backing = memfd }
                    { name = bios, kind = rom, base = "0xfff00000", size = 1 MiB }
                    { name = hole, kind = reserved, base = "0xe0000000", size = 64 KiB }
                    { name = mmio, kind = mmio, base = "0xd0000000", size = 4 KiB, device = dma }
                    { name = bal, kind = mmio, base = "0xd0001000", size = 4 KiB, device = balloon }
                  ]
                  vfio.containers = [
                    { name = a, backend = pinned, max-mappings = 100, discard = coordinated,
                      discard-block-size = 4 MiB, groups = [ { id = g1 }, { id = g2,
                      discard = coordinated, attach-at-start = false } ] }
                    { name = b, backend = vfio-type1, groups = [ { id = "12" } ] }
                  ]
                  balloon { enabled = true, initial-target = 8 MiB, unsafe-ignore-inhibitor = true }
                  devices.dma { enabled = true, group = g1, mmio-base = "0xd0000000" }
                  api { port = 8080, token = secret }
                }""");
        assertEquals(rich, VmSpecParser.parseString(VmSpecRenderer.render(rich)));
        VmSpec dflt = VmSpecParser.defaultVm();
        assertEquals(dflt, VmSpecParser.parseString(VmSpecRenderer.render(dflt)));
    }

    @Test
    void overlappingRegionsNameBoth() {
        ConfigError e = only("""
                actovisor.vm.memory = [ { name = a, base = 0, size = 8 MiB }, { name = b, base = "0x400000",
                  size = 8 MiB } ]""");
        assertEquals("actovisor.vm.memory[1]", e.path());
        assertTrue(e.message().contains("'b'") && e.message().contains("'a'"), e.message());
    }

    @Test
    void unalignedAndNonPositiveSizesAreRefused() {
        ConfigError size = only("actovisor.vm.memory = [ { name = a, base = 0, size = 5000 } ]");
        assertEquals("actovisor.vm.memory[0].size", size.path());
        assertEquals("5000", size.value());
        ConfigError base = only("actovisor.vm.memory = [ { name = a, base = \"0x1001\", size = 4 KiB } ]");
        assertEquals("actovisor.vm.memory[0].base", base.path());
        assertEquals("0x1001", base.value());
        assertEquals("actovisor.vm.memory[0].size",
                only("actovisor.vm.memory = [ { name = a, base = 0, size = -4096 } ]").path());
    }

    @Test
    void unknownBackendsListTheValidOnes() {
        ConfigError e = only("actovisor.vm.vfio.containers = [ { name = c, backend = iommufd } ]");
        assertEquals("actovisor.vm.vfio.containers[0].backend", e.path());
        assertEquals("iommufd", e.value());
        assertTrue(e.message().contains("[model, pinned, vfio-type1]"), e.message());
    }

    @Test
    void discardModesAreAContainerPropertyAndDefaultToInhibit() {
        VmSpec spec = parse("""
                actovisor.vm.vfio.containers = [ { name = a, groups = [ { id = g } ] },
                  { name = b, discard = on-demand, discard-block-size = 1 GiB, groups = [ { id = h,
                    discard = on-demand } ] } ]""");
        VmSpec.Container a = spec.containers().get(0);
        assertEquals(VmSpec.Discard.INHIBIT, a.discard());
        assertEquals(2L << 20, a.discardBlockSize());
        assertEquals(java.util.Optional.empty(), a.groups().get(0).discard());
        VmSpec.Container b = spec.containers().get(1);
        assertEquals(VmSpec.Discard.ON_DEMAND, b.discard());
        assertEquals(1L << 30, b.discardBlockSize());
        assertEquals(java.util.Optional.of(VmSpec.Discard.ON_DEMAND), b.groups().get(0).discard());
        ConfigError mode = only("actovisor.vm.vfio.containers = [ { name = c, discard = sometimes } ]");
        assertEquals("actovisor.vm.vfio.containers[0].discard", mode.path());
        assertTrue(mode.message().contains("[inhibit, coordinated, on-demand]"), mode.message());
    }

    @Test
    void aDiscardBlockSizeThatIsNotAPowerOfTwoIsRefusedNamingKeyAndValue() {
        for (String bad : new String[] {"3 MiB", "1000", "2 KiB", "0"}) {
            ConfigError e = only("actovisor.vm.vfio.containers = [ { name = c, discard = coordinated, "
                    + "discard-block-size = " + bad + " } ]");
            assertEquals("actovisor.vm.vfio.containers[0].discard-block-size", e.path(), bad);
            assertTrue(e.value().contains(bad.split(" ")[0]), e.value());
            assertTrue(e.message().contains("power of two"), e.message());
        }
    }

    @Test
    void balloonCompatibleIsAnErrorNamingTheKeyThatReplacedIt() {
        ConfigError e = only("""
                actovisor.vm.vfio.containers = [ { name = a, groups = [ { id = g, balloon-compatible = true } ] } ]""");
        assertEquals("actovisor.vm.vfio.containers[0].groups[0].balloon-compatible", e.path());
        assertEquals("true", e.value());
        assertTrue(e.message().contains("discard = on-demand"), e.message());
    }

    @Test
    void aGroupInTwoContainersIsRefused() {
        ConfigError e = only("""
                actovisor.vm.vfio.containers = [ { name = a, groups = [ { id = g } ] },
                  { name = b, groups = [ { id = g } ] } ]""");
        assertEquals("actovisor.vm.vfio.containers[1].groups[0].id", e.path());
        assertTrue(e.message().contains("containers[0].groups[0]"), e.message());
    }

    @Test
    void guestRamBeyondTheHostIsRefused() {
        ConfigError e = only("actovisor.vm.memory = [ { name = a, base = 0, size = 2 GiB } ]");
        assertEquals("actovisor.vm.memory", e.path());
        assertTrue(e.message().contains("1024 MiB"), e.message());
    }

    @Test
    void aMissingFirmwareFileIsNamed() {
        ConfigError e = only("actovisor.vm.firmware = \"/nonexistent/fw.bin\"");
        assertEquals("actovisor.vm.firmware", e.path());
        assertEquals("/nonexistent/fw.bin", e.value());
    }

    @Test
    void unknownKeysSuggestTheNearestValidKey() {
        List<ConfigError> errors = errors("""
                actovisor.vm { balon.enabled = true, memory = [ { name = a, base = 0, sise = 4 KiB } ] }""");
        assertTrue(errors.stream().anyMatch(e -> e.path().equals("actovisor.vm.balon")
                && e.message().contains("did you mean 'balloon'")), errors.toString());
        assertTrue(errors.stream().anyMatch(e -> e.path().equals("actovisor.vm.memory[0].sise")
                && e.message().contains("did you mean 'size'")), errors.toString());
    }

    @Test
    void wrongTypesNameTheValue() {
        ConfigError e = only("actovisor.vm.vcpus = abc");
        assertEquals("actovisor.vm.vcpus", e.path());
        assertEquals("abc", e.value());
        assertEquals("actovisor.vm.vcpus", only("actovisor.vm.vcpus = 0").path());
    }

    @Test
    void balloonAndApiRules() {
        ConfigError target = only("""
                actovisor.vm.memory = [ { name = ram, base = 0, size = 64 MiB }, { name = b, kind = mmio,
                  base = "0xd0001000", size = 4 KiB, device = balloon } ]
                actovisor.vm.balloon { enabled = true, initial-target = 128 MiB }""");
        assertEquals("actovisor.vm.balloon.initial-target", target.path());
        assertTrue(target.message().contains("64 MiB"), target.message());
        List<ConfigError> api = errors("actovisor.vm.api { host = \"0.0.0.0\", allow-remote = true }");
        assertTrue(api.stream().anyMatch(e -> e.path().equals("actovisor.vm.api.host")), api.toString());
        assertTrue(api.stream().anyMatch(e -> e.path().equals("actovisor.vm.api.allow-remote")), api.toString());
    }

    @Test
    void anEnabledBalloonNeedsItsMmioRegion() {
        ConfigError e = only("actovisor.vm.balloon.enabled = true");
        assertEquals("actovisor.vm.balloon.mmio-base", e.path());
        assertEquals("0xd0001000", e.value());
    }

    @Test
    void everyErrorIsReportedAtOnce() {
        List<ConfigError> errors = errors("""
                actovisor.vm {
                  vcpus = 99
                  memory = [ { name = a, base = 1, size = 4 KiB } ]
                  vfio.containers = [ { name = c, backend = nope } ]
                  firmware = "/missing"
                  bogus = 1
                }""");
        assertEquals(5, errors.size(), errors.toString());
    }

    @Test
    void malformedHoconIsOneErrorWithItsLine() {
        ConfigValidationException e = assertThrows(ConfigValidationException.class,
                () -> VmSpecParser.parseString("actovisor.vm {\n  name = x\n  memory = [ {\n}"));
        assertEquals(1, e.errors().size());
        assertEquals(4, e.errors().get(0).line(), e.errors().toString());
    }
}
