package io.actovisor.config;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.ConfigFactory;
import io.actovisor.memory.AddressRange;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import java.util.OptionalLong;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * One rule of the VM definition per test, at its edge: the last accepted value is accepted, the first refused one
 * is refused with its path, value and message, and an accepted value reaches the spec unchanged.
 */
class VmSpecFieldRulesTest {
    private static final String RAM = "{ name = ram, base = 0, size = 64 MiB }";

    private static VmSpec parse(String hocon) {
        return VmSpecParser.parse(ConfigFactory.parseString(hocon), OptionalLong.of(1L << 30));
    }

    /** The errors of {@code hocon}, without their place (ValidateErrorsTest checks every error has one). */
    private static List<ConfigError> errors(String hocon) {
        return assertThrows(ConfigValidationException.class, () -> parse(hocon)).errors().stream()
                .map(e -> new ConfigError(e.path(), e.value(), e.message())).toList();
    }

    private static void refused(String hocon, String path, String value, String message) {
        assertEquals(List.of(new ConfigError(path, value, message)), errors(hocon));
    }

    @Test
    void the_vm_block_must_be_an_object() {
        refused("actovisor.vm = 5", "actovisor.vm", "5", "must be an object");
        refused("actovisor { }", "actovisor.vm", null, "missing: a VM definition needs an actovisor.vm block");
    }

    @Test
    void the_vm_name_is_lower_case_letters_digits_and_dashes() {
        assertEquals("vm-2", parse("actovisor.vm.name = vm-2").name());
        refused("actovisor.vm.name = Big_VM", "actovisor.vm.name", "Big_VM",
                "must be lower-case letters, digits and dashes, starting with a letter or digit");
    }

    @Test
    void vcpus_run_from_1_to_64() {
        assertEquals(64, parse("actovisor.vm.vcpus = 64").vcpus());
        assertEquals(3, parse("actovisor.vm.vcpus = 3").vcpus());
        refused("actovisor.vm.vcpus = 65", "actovisor.vm.vcpus", "65", "must be between 1 and 64");
        refused("actovisor.vm.vcpus = [1]", "actovisor.vm.vcpus", "[1]", "must be a whole number");
    }

    @Test
    void addresses_are_hex_strings_or_non_negative_numbers() {
        VmSpec spec = parse("actovisor.vm.memory = [ " + RAM
                + ", { name = uart, kind = mmio, base = \"0xd000_0000\", size = 4 KiB, device = serial },"
                + " { name = gap, kind = reserved, base = 3758096384, size = 4 KiB } ]");
        assertEquals(AddressRange.of(0xd000_0000L, 4096), spec.memory().get(1).range());
        assertEquals(Optional.of("serial"), spec.memory().get(1).device());
        assertEquals(AddressRange.of(0xe000_0000L, 4096), spec.memory().get(2).range());
        refused("actovisor.vm.memory = [ " + RAM + ", { name = x, kind = reserved, base = -4096, size = 4 KiB } ]",
                "actovisor.vm.memory[1].base", "-4096", "must be an address: \"0x...\" or a non-negative number");
        refused("actovisor.vm.memory = [ " + RAM + ", { name = x, kind = reserved, base = \"0xzz\", size = 4 KiB } ]",
                "actovisor.vm.memory[1].base", "\"0xzz\"", "must be an address: \"0x...\" or a non-negative number");
        refused("actovisor.vm.memory = [ " + RAM + ", { name = x, kind = reserved, size = 4 KiB } ]",
                "actovisor.vm.memory[1].base", null, "missing");
    }

    @Test
    void region_names_are_present_unique_and_not_empty() {
        refused("actovisor.vm.memory = [ " + RAM + ", { name = ram, kind = reserved, base = \"0x10000000\", size = 4 KiB } ]",
                "actovisor.vm.memory[1].name", "ram", "another region is already called 'ram' (actovisor.vm.memory[0])");
        refused("actovisor.vm.memory = [ " + RAM + ", { kind = reserved, base = \"0x10000000\", size = 4 KiB } ]",
                "actovisor.vm.memory[1].name", null, "missing");
        refused("actovisor.vm.memory = [ " + RAM + ", { name = \" \", kind = reserved, base = \"0x10000000\", size = 4 KiB } ]",
                "actovisor.vm.memory[1].name", "\" \"", "must not be empty");
        refused("actovisor.vm.memory = [ " + RAM + ", { name = [a], kind = reserved, base = \"0x10000000\", size = 4 KiB } ]",
                "actovisor.vm.memory[1].name", "[\"a\"]", "must be a string");
    }

    @Test
    void sizes_are_positive_page_multiples() {
        refused("actovisor.vm.memory = [ " + RAM + ", { name = x, kind = reserved, base = \"0x10000000\", size = 0 } ]",
                "actovisor.vm.memory[1].size", "0", "must be a positive multiple of 4 KiB");
        refused("actovisor.vm.memory = [ " + RAM + ", { name = x, kind = reserved, base = \"0x10000000\" } ]",
                "actovisor.vm.memory[1].size", null, "missing");
        refused("actovisor.vm.memory = [ " + RAM + ", { name = x, kind = reserved, base = \"0x10000000\", size = lots } ]",
                "actovisor.vm.memory[1].size", "lots", "must be a size such as 64 MiB or 4096");
        assertEquals(List.of(new ConfigError("actovisor.vm.memory", "5", "must be a list of objects"),
                new ConfigError("actovisor.vm.memory", null, "the VM needs at least one ram region")),
                errors("actovisor.vm.memory = 5"));
    }

    @Test
    void only_memory_has_backing_and_only_mmio_names_a_device() {
        refused("actovisor.vm.memory = [ { name = ram, base = 0, size = 64 MiB, device = d } ]",
                "actovisor.vm.memory[0].device", "d", "only mmio regions name a device");
        refused("actovisor.vm.memory = [ " + RAM + ", { name = x, kind = mmio, base = \"0x10000000\", size = 4 KiB,"
                + " device = d, backing = memfd } ]", "actovisor.vm.memory[1].backing", "memfd", "mmio regions have no host backing");
        refused("actovisor.vm.memory = [ " + RAM + ", { name = x, kind = reserved, base = \"0x10000000\", size = 4 KiB,"
                + " backing = anonymous } ]", "actovisor.vm.memory[1].backing", "anonymous",
                "reserved regions have no host backing");
    }

    @Test
    void a_region_may_end_at_2_to_the_64_but_not_beyond() {
        VmSpec top = parse("actovisor.vm.memory = [ " + RAM
                + ", { name = top, kind = reserved, base = \"0xfffffffffffff000\", size = 4 KiB } ]");
        assertEquals(AddressRange.of(0xfffffffffffff000L, 4096), top.memory().get(1).range());
        refused("actovisor.vm.memory = [ " + RAM
                + ", { name = top, kind = reserved, base = \"0xfffffffffffff000\", size = 8 KiB } ]",
                "actovisor.vm.memory[1].size", "\"8 KiB\"", "base 0xfffffffffffff000 plus this size ends beyond 2^64");
    }

    @Test
    void a_vm_needs_ram_and_no_more_than_the_host_has() {
        refused("actovisor.vm.memory = [ { name = m, kind = mmio, base = 0, size = 4 KiB, device = d } ]",
                "actovisor.vm.memory", null, "the VM needs at least one ram region");
        assertEquals(1L << 30, parse("actovisor.vm.memory = [ { name = ram, base = 0, size = 1 GiB } ]").ramBytes());
        refused("actovisor.vm.memory = [ { name = ram, base = 0, size = 1 GiB },"
                + " { name = more, base = \"0x80000000\", size = 4 KiB } ]", "actovisor.vm.memory", "1024 MiB",
                "guest RAM exceeds this host's memory (1024 MiB in /proc/meminfo MemTotal)");
        // Only RAM counts against the host: a device window at the limit adds nothing.
        assertEquals(1L << 30, parse("actovisor.vm.memory = [ { name = ram, base = 0, size = 1 GiB },"
                + " { name = m, kind = mmio, base = \"0x80000000\", size = 4 KiB, device = d } ]").ramBytes());
        VmSpec withRom = parse("actovisor.vm.memory = [ " + RAM
                + ", { name = bios, kind = rom, base = \"0xfff00000\", size = 1 MiB } ]");
        assertEquals(64L << 20, withRom.ramBytes());
        assertTrue(withRom.memory().get(1).readOnly());
        assertTrue(VmSpecParser.HostLimits.memTotalBytes().orElseThrow() > 0);
    }

    @Test
    void the_work_area_must_fit_in_the_ram_at_address_0() {
        assertEquals(2, parse("actovisor.vm { memory = [ { name = ram, base = 0, size = 3 MiB } ],"
                + " guest.workload-mib = 2 }").guest().workloadMib());
        refused("actovisor.vm { memory = [ { name = ram, base = 0, size = 2 MiB } ], guest.workload-mib = 2 }",
                "actovisor.vm.guest.workload-mib", "2", "the work area (from 1 MiB) must fit in the RAM region at guest"
                        + " address 0 (2 MiB)");
        // RAM elsewhere does not bound the work area.
        parse("actovisor.vm { memory = [ { name = ram, base = \"0x100000000\", size = 2 MiB } ], guest.workload-mib = 2 }");
        refused("actovisor.vm.guest.program = \"Bad Name\"", "actovisor.vm.guest.program", "Bad Name",
                "must be a firmware program name: 1 to 31 lower-case letters, digits, dashes or underscores");
    }

    @Test
    void a_firmware_file_is_used_when_it_exists(@TempDir Path dir) throws IOException {
        Path fw = Files.write(dir.resolve("fw.bin"), new byte[] {1});
        VmSpec spec = parse("actovisor.vm.firmware = \"" + fw + "\"");
        assertEquals(Optional.of(fw), spec.firmware().file());
        assertFalse(spec.firmware().bundled());
        assertTrue(VmSpec.Firmware.BUNDLED.bundled());
    }

    @Test
    void containers_have_unique_names_and_type1_groups_are_numbers() {
        refused("actovisor.vm.vfio.containers = [ { name = a }, { name = a } ]",
                "actovisor.vm.vfio.containers[1].name", "a", "another container is already called 'a'"
                        + " (actovisor.vm.vfio.containers[0])");
        refused("actovisor.vm.vfio.containers = [ { name = a, backend = vfio-type1, groups = [ { id = g1 } ] } ]",
                "actovisor.vm.vfio.containers[0].groups[0].id", "g1", "a vfio-type1 group id is the number of "
                        + "/dev/vfio/<id>");
        VmSpec spec = parse("actovisor.vm.vfio.containers = [ { name = a, backend = vfio-type1, groups = [ { id = \"7\" } ] } ]");
        assertEquals(new VmSpec.Group("7", java.util.Optional.empty(), true), spec.containers().get(0).groups().get(0));
        assertEquals(65535, spec.containers().get(0).maxMappings());
    }

    @Test
    void container_names_and_group_ids_are_names_an_actor_can_carry() {
        String rule = "must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit";
        refused("actovisor.vm.vfio.containers = [ { name = \"pass\\\"through\" } ]",
                "actovisor.vm.vfio.containers[0].name", "pass\"through", rule);
        refused("actovisor.vm.vfio.containers = [ { name = a, groups = [ { id = \"g 1\" } ] } ]",
                "actovisor.vm.vfio.containers[0].groups[0].id", "g 1", rule);
        refused("actovisor.vm.vfio.containers = [ { name = \"-a\" } ]", "actovisor.vm.vfio.containers[0].name", "-a",
                rule);
        assertEquals("Pass_through.1", parse("actovisor.vm.vfio.containers = [ { name = Pass_through.1 } ]")
                .containers().get(0).name());
    }

    @Test
    void balloon_target_and_polling_are_checked() {
        refused("actovisor.vm.balloon.initial-target = 5000", "actovisor.vm.balloon.initial-target", "5000",
                "must be a multiple of 4 KiB");
        refused("actovisor.vm.balloon.initial-target = 128 MiB", "actovisor.vm.balloon.initial-target", "\"128 MiB\"",
                "exceeds guest RAM (64 MiB)");
        assertEquals(64L << 20, parse("actovisor.vm.balloon.initial-target = 64 MiB").balloon().initialTargetBytes());
        refused("actovisor.vm { memory = [ " + RAM + ", { name = m, kind = mmio, base = \"0x80000000\", size = 4 KiB,"
                + " device = d } ], balloon.initial-target = 65540 KiB }", "actovisor.vm.balloon.initial-target",
                "\"65540 KiB\"", "exceeds guest RAM (64 MiB)");
        refused("actovisor.vm.balloon.stats-polling-interval = 0s", "actovisor.vm.balloon.stats-polling-interval",
                "\"0s\"", "must be positive");
        refused("actovisor.vm.balloon.stats-polling-interval = soon", "actovisor.vm.balloon.stats-polling-interval",
                "soon", "must be a duration such as 5s or 500ms");
        assertEquals(Duration.ofMillis(1), parse("actovisor.vm.balloon.stats-polling-interval = 1ms").balloon()
                .statsPollingInterval());
        refused("actovisor.vm.balloon.enabled = maybe", "actovisor.vm.balloon.enabled", "maybe",
                "must be true or false");
        VmSpec.Balloon b = parse("actovisor.vm { memory = [ " + RAM + ", { name = bal, kind = mmio, base = \"0xd0001000\","
                + " size = 4 KiB, device = balloon } ], balloon { enabled = true, deflate-on-oom = false } }").balloon();
        assertTrue(b.enabled());
        assertFalse(b.deflateOnOom());
        assertEquals(0xd0001000L, b.mmioBase());
        refused("actovisor.vm { memory = [ " + RAM + ", { name = bal, kind = mmio, base = \"0xd0001000\","
                + " size = 4 KiB, device = other } ], balloon.enabled = true }", "actovisor.vm.balloon.mmio-base",
                "0xd0001000", "no mmio region with device = \"balloon\" starts there; add one to memory");
    }

    private static final String DMA_VM = "actovisor.vm { memory = [ " + RAM + ", { name = dma, kind = mmio,"
            + " base = \"0xd0000000\", size = 4 KiB, device = dma } ], vfio.containers = [ { name = c, groups = [ { id = g1 } ] } ],"
            + " devices.dma { enabled = true, group = %s, mmio-base = \"%s\" } }";

    @Test
    void the_dma_device_needs_a_configured_group_and_its_mmio_region() {
        assertEquals(Optional.of(new VmSpec.Dma("g1", 0xd0000000L)),
                parse(DMA_VM.formatted("g1", "0xd0000000")).devices().dma());
        refused(DMA_VM.formatted("g2", "0xd0000000"), "actovisor.vm.devices.dma.group", "g2",
                "no VFIO group with this id is configured in vfio.containers");
        refused(DMA_VM.formatted("g1", "0x1000"), "actovisor.vm.devices.dma.mmio-base", "0x1000",
                "no mmio region starts there; add one to memory with device = \"dma\"");
        assertFalse(parse("actovisor.vm.devices.serial = false").devices().serial());
        assertTrue(parse("actovisor.vm { }").devices().serial());
    }

    @Test
    void a_remote_api_needs_both_allow_remote_and_a_token() {
        VmSpec.Api remote = parse("actovisor.vm.api { host = \"0.0.0.0\", allow-remote = true, token = t }").api();
        assertEquals("0.0.0.0", remote.host());
        assertTrue(remote.allowRemote());
        assertEquals(Optional.of("t"), remote.token());
        for (String loopback : List.of("localhost", "::1", "127.0.0.2")) {
            assertEquals(loopback, parse("actovisor.vm.api.host = \"" + loopback + "\"").api().host());
        }
        refused("actovisor.vm.api { host = \"10.0.0.1\", token = t }", "actovisor.vm.api.host", "10.0.0.1",
                "is not a loopback address; a remote API needs allow-remote = true and a token");
        refused("actovisor.vm.api { allow-remote = true }", "actovisor.vm.api.allow-remote", "true",
                "a remote API needs a token");
        refused("actovisor.vm.api.port = 65536", "actovisor.vm.api.port", "65536", "must be between 0 and 65535");
        assertEquals(65535, parse("actovisor.vm.api.port = 65535").api().port());
    }

    @Test
    void unknown_keys_are_found_in_every_nested_object_and_list_element() {
        refused("actovisor.vm.vfio.containers = [ { name = c, groups = [ { id = g, atach-at-start = true } ] } ]",
                "actovisor.vm.vfio.containers[0].groups[0].atach-at-start", "true", "unknown key; did you mean "
                        + "'attach-at-start'?");
        refused("actovisor.vm.devices.dma.enabeld = true", "actovisor.vm.devices.dma.enabeld", "true",
                "unknown key; did you mean 'enabled'?");
        refused("actovisor.vm.api.hort = x", "actovisor.vm.api.hort", "x", "unknown key; did you mean 'host'?");
        refused("actovisor.vm.api.q = x", "actovisor.vm.api.q", "x",
                "unknown key; valid keys are [allow-remote, enabled, host, port, token]");
        refused("actovisor.vm.api.completely-unrelated = x", "actovisor.vm.api.completely-unrelated", "x",
                "unknown key; valid keys are [allow-remote, enabled, host, port, token]");
        refused("actovisor.vm.\"odd key\" = 1", "actovisor.vm.\"odd key\"", "1", "unknown key; valid keys are "
                + "[api, balloon, devices, firmware, guest, memory, name, vcpus, vfio]");
    }

    @Test
    void files_are_parsed_and_a_missing_one_is_one_error(@TempDir Path dir) throws IOException {
        Path file = Files.writeString(dir.resolve("vm.conf"), "actovisor.vm.name = from-file\n");
        assertEquals("from-file", VmSpecParser.parseFile(file).name());
        ConfigValidationException e = assertThrows(ConfigValidationException.class,
                () -> VmSpecParser.parseFile(dir.resolve("absent.conf")));
        assertEquals(List.of(new ConfigError(dir.resolve("absent.conf").toString(), null, "no such file")), e.errors());
        ConfigValidationException bad = assertThrows(ConfigValidationException.class,
                () -> VmSpecParser.parseString("actovisor.vm {\n  name = \n}"));
        assertEquals(3, bad.errors().get(0).line(), bad.errors().toString());
        assertTrue(bad.errors().get(0).message().startsWith("not valid HOCON"), bad.errors().toString());
    }

    @Test
    void errors_read_as_one_line_each_under_a_count() {
        assertEquals("a.b = 5: too big", new ConfigError("a.b", "5", "too big").toString());
        assertEquals("a.b: missing", new ConfigError("a.b", null, "missing").toString());
        assertEquals("1 error in the VM definition:\n  a: missing",
                new ConfigValidationException(List.of(new ConfigError("a", null, "missing"))).getMessage());
        assertEquals("2 errors in the VM definition:\n  a: missing\n  b = 1: bad", new ConfigValidationException(
                List.of(new ConfigError("a", null, "missing"), new ConfigError("b", "1", "bad"))).getMessage());
    }

    @Test
    void sizes_render_in_the_largest_exact_unit() {
        assertEquals("0", VmSpecRenderer.size(0));
        assertEquals("1536", VmSpecRenderer.size(1536));
        assertEquals("4 KiB", VmSpecRenderer.size(4096));
        assertEquals("3 MiB", VmSpecRenderer.size(3L << 20));
        assertEquals("2 GiB", VmSpecRenderer.size(2L << 30));
        String rendered = VmSpecRenderer.render(parse("actovisor.vm { memory = [ " + RAM
                + ", { name = bios, kind = rom, base = \"0xfff00000\", size = 1 MiB } ], vfio.containers = [ { name = c } ] }"));
        assertTrue(rendered.contains("{ name = \"bios\", kind = rom, base = \"0xfff00000\", size = 1 MiB, backing = anonymous }"),
                rendered);
        assertTrue(rendered.contains("max-mappings = 65535, discard = inhibit, discard-block-size = 2097152, groups = [] }"),
                rendered);
    }
}
