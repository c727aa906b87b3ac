package io.actovisor.config;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigException;
import com.typesafe.config.ConfigFactory;
import com.typesafe.config.ConfigList;
import com.typesafe.config.ConfigObject;
import com.typesafe.config.ConfigParseOptions;
import com.typesafe.config.ConfigRenderOptions;
import com.typesafe.config.ConfigValue;
import com.typesafe.config.ConfigValueType;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.RegionKind;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.OptionalLong;
import java.util.Set;
import java.util.function.Function;
import java.util.regex.Pattern;

/**
 * Parses and validates {@code actovisor.vm} into a {@link VmSpec}. It collects <b>every</b> problem before it
 * gives up, each naming its config path and the offending value, and suggests the nearest valid key for an unknown
 * one. Defaults come from this module's {@code reference.conf}.
 */
public final class VmSpecParser {
    static final String ROOT = "actovisor.vm";
    private static final long PAGE = 4096;
    private static final long DEFAULT_DISCARD_BLOCK = 2L << 20;
    private static final Pattern NAME = Pattern.compile("[a-z0-9][a-z0-9-]*");
    /** Container names and group ids become actor names and log keys: letters, digits, '.', '_' and '-'. */
    private static final String PART_NAME_RULE = "must be 1 to 64 letters, digits, '.', '_' or '-', starting with a "
            + "letter or digit";
    private static final Pattern PART_NAME = Pattern.compile("[A-Za-z0-9][A-Za-z0-9._-]{0,63}");
    /** The programs of the bundled firmware (devices/src/main/firmware, {@code PROGRAM("name", ...)}). */
    static final Set<String> BUNDLED_PROGRAMS = Set.of("workload", "spin", "memtest", "mmio");

    /** The keys each kind of object may hold: unknown keys are errors. */
    private static final Map<String, Set<String>> SCHEMA = merged(Map.of(
            "vm", Set.of("name", "vcpus", "memory", "firmware", "guest", "vfio", "balloon", "devices", "api"),
            "region", Set.of("name", "kind", "base", "size", "backing", "read-only", "device"),
            "guest", Set.of("kind", "program", "workload-mib", "kernel", "initrd", "cmdline"),
            "vfio", Set.of("containers"),
            "container", Set.of("name", "backend", "max-mappings", "groups", "discard", "discard-block-size"),
            // balloon-compatible is known only to be refused with the key that replaced it
            "group", Set.of("id", "discard", "balloon-compatible", "attach-at-start"),
            "balloon", Set.of("enabled", "initial-target", "deflate-on-oom", "stats-polling-interval",
                    "unsafe-ignore-inhibitor", "mmio-base", "free-page-reporting"),
            "devices", Set.of("serial", "dma", "blk"),
            "dma", Set.of("enabled", "group", "mmio-base"),
            "api", Set.of("enabled", "host", "port", "allow-remote", "token")),
            Map.of("blk", Set.of("enabled", "size-mib", "mmio-base", "container")));

    private static Map<String, Set<String>> merged(Map<String, Set<String>> a, Map<String, Set<String>> b) {
        Map<String, Set<String>> all = new java.util.HashMap<>(a);
        all.putAll(b);
        return Map.copyOf(all);
    }

    private final OptionalLong hostMemoryBytes;
    private final List<ConfigError> errors = new ArrayList<>();
    private Config config;

    private VmSpecParser(OptionalLong hostMemoryBytes) {
        this.hostMemoryBytes = hostMemoryBytes;
    }

    /** Parse {@code user} (which holds {@code actovisor.vm}) against this host's memory size. */
    public static VmSpec parse(Config user) {
        return parse(user, HostLimits.memTotalBytes());
    }

    /** Parse {@code user}; {@code hostMemoryBytes} bounds guest RAM when known. */
    public static VmSpec parse(Config user, OptionalLong hostMemoryBytes) {
        return new VmSpecParser(hostMemoryBytes).run(user);
    }

    /** Parse HOCON text; a syntax error is one error naming its line. */
    public static VmSpec parseString(String hocon) {
        return parse(parseHocon(() -> ConfigFactory.parseString(hocon, ConfigParseOptions.defaults()
                .setOriginDescription("VM definition")), "the VM definition"));
    }

    /** Parse a HOCON file; a missing file or a syntax error is one error naming it. */
    public static VmSpec parseFile(Path file) {
        if (!Files.isRegularFile(file)) {
            throw new ConfigValidationException(List.of(new ConfigError(file.toString(), null,
                    "no such file")));
        }
        return parse(parseHocon(() -> ConfigFactory.parseFile(file.toFile(), ConfigParseOptions.defaults()
                .setAllowMissing(false)), file.toString()));
    }

    /** The VM {@code ./actovisor run} starts without a file. */
    public static VmSpec defaultVm() {
        return parse(defaultVmConfig());
    }

    /** The embedded default VM's HOCON. */
    public static Config defaultVmConfig() {
        return ConfigFactory.parseResources(VmSpecParser.class, "default-vm.conf",
                ConfigParseOptions.defaults().setAllowMissing(false));
    }

    private static Config parseHocon(java.util.function.Supplier<Config> parse, String what) {
        try {
            return parse.get();
        } catch (ConfigException e) {
            int line = e.origin() != null && e.origin().lineNumber() > 0 ? e.origin().lineNumber() : 1;
            throw new ConfigValidationException(List.of(new ConfigError(ROOT, null, "not valid HOCON: "
                    + ConfigErrors.describe(e)).at(what, line)));
        } catch (RuntimeException e) {
            // The parser's own failures on garbage input (it is not ours to fix) are reported, not thrown.
            throw new ConfigValidationException(List.of(new ConfigError(ROOT, null, "not valid HOCON: the parser "
                    + "cannot read it").at(what, 1)));
        }
    }

    private VmSpec run(Config user) {
        Config reference = ConfigFactory.parseResources(VmSpecParser.class, "/reference.conf");
        Config written = user;
        if (!resolvedToRoot(user)) {
            // The VM block is itself a substitution (actovisor.vm = ${base}): its keys can be checked only once that
            // is resolved, against the file and the defaults, keeping only what the file wrote.
            try {
                written = user.resolveWith(user.withFallback(reference));
            } catch (ConfigException e) {
                errors.add(ConfigErrors.fromLibrary(e, ROOT));
                throw failure(user);
            }
        }
        if (!written.hasPath(ROOT)) {
            errors.add(new ConfigError(ROOT, null, "missing: a VM definition needs an actovisor.vm block"));
            throw failure(user);
        }
        if (written.getValue(ROOT).valueType() != ConfigValueType.OBJECT) {
            errors.add(new ConfigError(ROOT, render(written.getValue(ROOT)), "must be an object"));
            throw failure(user);
        }
        checkKeys(written.getConfig(ROOT).root(), "vm", ROOT);
        try {
            config = user.withFallback(reference).resolve();
        } catch (ConfigException e) {
            // An unresolved ${X}: one error at its line, the rest cannot be read without it.
            errors.add(ConfigErrors.fromLibrary(e, ROOT));
            throw failure(user);
        }
        try {
            return spec(user);
        } catch (ConfigException e) {
            // A read this parser does not guard yet: still an error at a line, never a stack trace.
            errors.add(ConfigErrors.fromLibrary(e, ROOT));
            throw failure(user);
        }
    }

    /** Whether {@code actovisor} and {@code actovisor.vm}, where present, are values and not substitutions. */
    private static boolean resolvedToRoot(Config user) {
        try {
            if (user.hasPath(ROOT)) {
                user.getValue(ROOT).valueType();
            }
            return true;
        } catch (ConfigException.NotResolved e) {
            return false;
        }
    }

    /** Every error so far, each at the file and line of its value, sorted by line. */
    private ConfigValidationException failure(Config user) {
        return new ConfigValidationException(ConfigErrors.placed(errors, user));
    }

    private VmSpec spec(Config user) {
        String name = string(ROOT + ".name");
        if (name != null && !NAME.matcher(name).matches()) {
            error(ROOT + ".name", name, "must be lower-case letters, digits and dashes, starting with a letter or "
                    + "digit");
        }
        int vcpus = intIn(ROOT + ".vcpus", 1, 64);
        List<VmSpec.Region> memory = regions();
        VmSpec.Firmware firmware = firmware();
        int workload = intIn(ROOT + ".guest.workload-mib", 1, 1024);
        GuestKind kind = config.getValue(ROOT + ".guest").valueType() == ConfigValueType.OBJECT
                ? enumOf(config.getConfig(ROOT + ".guest"), ROOT + ".guest", "kind", "auto", GuestKind.class,
                        GuestKind::configName)
                : GuestKind.AUTO;
        String program = string(ROOT + ".guest.program");
        if (program != null && !program.matches("[a-z0-9_-]{1,31}")) {
            error(ROOT + ".guest.program", program, "must be a firmware program name: 1 to 31 lower-case letters, "
                    + "digits, dashes or underscores");
        } else if (program != null && firmware.bundled() && !BUNDLED_PROGRAMS.contains(program)) {
            String nearest = nearest(program, BUNDLED_PROGRAMS);
            error(ROOT + ".guest.program", program, "the bundled firmware has no such program" + (nearest == null
                    ? "" : "; did you mean '" + nearest + "'?") + " (programs: " + new java.util.TreeSet<>(
                    BUNDLED_PROGRAMS) + ")");
        }
        long ramFromZero = memory.stream().filter(r -> r.kind() == RegionKind.RAM && r.range().base() == 0)
                .mapToLong(r -> r.range().size()).findFirst().orElse(0);
        if (ramFromZero > 0 && ((long) workload << 20) + (1L << 20) > ramFromZero) {
            error(ROOT + ".guest.workload-mib", Integer.toString(workload), "the work area (from 1 MiB) must fit in "
                    + "the RAM region at guest address 0 (" + (ramFromZero >> 20) + " MiB)");
        }
        VmSpec.Guest guest = linuxGuest(program, workload, kind);
        List<VmSpec.Container> containers = containers();
        VmSpec.Balloon balloon = balloon(memory);
        VmSpec.Devices devices = devices(containers, memory);
        VmSpec.Api api = api();
        if (!errors.isEmpty()) {
            throw failure(user);
        }
        return new VmSpec(name, vcpus, memory, firmware, guest, containers, balloon,
                devices, api);
    }

    // --- unknown keys ---

    private void checkKeys(ConfigObject object, String kind, String path) {
        Set<String> known = SCHEMA.get(kind);
        for (Map.Entry<String, ConfigValue> e : object.entrySet()) {
            String key = e.getKey();
            String at = path + "." + quote(key);
            if (!known.contains(key)) {
                String nearest = nearest(key, known);
                error(at, render(e.getValue()), "unknown key" + (nearest == null ? "; valid keys are "
                        + new java.util.TreeSet<>(known) : "; did you mean '" + nearest + "'?"));
                continue;
            }
            String childKind = switch (kind + "." + key) {
                case "vm.guest" -> "guest";
                case "vm.vfio" -> "vfio";
                case "vm.balloon" -> "balloon";
                case "vm.devices" -> "devices";
                case "vm.api" -> "api";
                case "devices.dma" -> "dma";
                case "devices.blk" -> "blk";
                default -> null;
            };
            String elementKind = switch (kind + "." + key) {
                case "vm.memory" -> "region";
                case "vfio.containers" -> "container";
                case "container.groups" -> "group";
                default -> null;
            };
            if (childKind != null && e.getValue() instanceof ConfigObject child) {
                checkKeys(child, childKind, at);
            } else if (elementKind != null && e.getValue() instanceof ConfigList list) {
                for (int i = 0; i < list.size(); i++) {
                    if (list.get(i) instanceof ConfigObject element) {
                        checkKeys(element, elementKind, at + "[" + i + "]");
                    }
                }
            }
        }
    }

    private static String quote(String key) {
        return key.matches("[A-Za-z0-9_-]+") ? key : "\"" + key + "\"";
    }

    /** The valid key closest to {@code key} by edit distance, if close enough to be a typo. */
    static String nearest(String key, Set<String> known) {
        String best = null;
        int bestDistance = Integer.MAX_VALUE;
        for (String candidate : new java.util.TreeSet<>(known)) {
            int d = distance(key.toLowerCase(Locale.ROOT), candidate);
            if (d < bestDistance) {
                bestDistance = d;
                best = candidate;
            }
        }
        return bestDistance <= Math.max(2, key.length() / 3) ? best : null;
    }

    private static int distance(String a, String b) {
        int[] prev = new int[b.length() + 1];
        int[] cur = new int[b.length() + 1];
        for (int j = 0; j <= b.length(); j++) {
            prev[j] = j;
        }
        for (int i = 1; i <= a.length(); i++) {
            cur[0] = i;
            for (int j = 1; j <= b.length(); j++) {
                int cost = a.charAt(i - 1) == b.charAt(j - 1) ? 0 : 1;
                cur[j] = Math.min(Math.min(cur[j - 1] + 1, prev[j] + 1), prev[j - 1] + cost);
            }
            int[] t = prev;
            prev = cur;
            cur = t;
        }
        return prev[b.length()];
    }

    // --- sections ---

    private List<VmSpec.Region> regions() {
        String path = ROOT + ".memory";
        List<? extends Config> list = objects(path);
        List<VmSpec.Region> regions = new ArrayList<>();
        Map<String, String> names = new HashMap<>();
        List<String> paths = new ArrayList<>();
        for (int i = 0; i < list.size(); i++) {
            Config c = list.get(i);
            String at = path + "[" + i + "]";
            String name = string(c, at, "name", null);
            if (name != null && names.putIfAbsent(name, at) != null) {
                error(at + ".name", name, "another region is already called '" + name + "' (" + names.get(name)
                        + ")");
            }
            RegionKind kind = enumOf(c, at, "kind", "ram", RegionKind.class, k -> k.name().toLowerCase(Locale.ROOT));
            OptionalLong base = address(c, at, "base", null);
            OptionalLong size = bytes(c, at + ".size", "size");
            if (base.isPresent() && base.getAsLong() % PAGE != 0) {
                error(at + ".base", hex(base.getAsLong()), "must be aligned to 4 KiB");
            }
            if (size.isPresent() && (size.getAsLong() <= 0 || size.getAsLong() % PAGE != 0)) {
                error(at + ".size", render(c, "size"), "must be a positive multiple of 4 KiB");
                size = OptionalLong.empty();
            }
            Optional<VmSpec.Backing> backing = Optional.empty();
            Optional<String> device = Optional.empty();
            if (kind != null && kind.isMemory()) {
                backing = Optional.ofNullable(enumOf(c, at, "backing", "anonymous", VmSpec.Backing.class,
                        b -> b.name().toLowerCase(Locale.ROOT)));
                if (c.hasPath("device")) {
                    error(at + ".device", render(c, "device"), "only mmio regions name a device");
                }
            } else if (kind != null) {
                if (c.hasPath("backing")) {
                    error(at + ".backing", render(c, "backing"), kind.name().toLowerCase(Locale.ROOT)
                            + " regions have no host backing");
                }
                if (kind == RegionKind.MMIO) {
                    device = Optional.ofNullable(string(c, at, "device", null));
                }
            }
            boolean readOnly = bool(c, at, "read-only", false);
            if (name == null || kind == null || base.isEmpty() || size.isEmpty()) {
                continue;
            }
            if (Long.compareUnsigned(base.getAsLong(), -size.getAsLong()) > 0 && base.getAsLong() != 0) {
                error(at + ".size", render(c, "size"), "base " + hex(base.getAsLong()) + " plus this size ends "
                        + "beyond 2^64");
                continue;
            }
            regions.add(new VmSpec.Region(name, kind, AddressRange.of(base.getAsLong(), size.getAsLong()), backing,
                    readOnly || kind == RegionKind.ROM, device));
            paths.add(at);
        }
        for (int i = 0; i < regions.size(); i++) {
            for (int j = i + 1; j < regions.size(); j++) {
                if (regions.get(i).range().overlaps(regions.get(j).range())) {
                    error(paths.get(j), regions.get(j).name(), "region '" + regions.get(j).name() + "' "
                            + regions.get(j).range() + " overlaps region '" + regions.get(i).name() + "' "
                            + regions.get(i).range() + " (" + paths.get(i) + ")");
                }
            }
        }
        if (list.stream().noneMatch(c -> c.hasPath("kind") ? "ram".equals(safeString(c, "kind")) : true)) {
            error(path, null, "the VM needs at least one ram region");
        }
        long ram = regions.stream().filter(r -> r.kind() == RegionKind.RAM).mapToLong(r -> r.range().size()).sum();
        if (hostMemoryBytes.isPresent() && ram > hostMemoryBytes.getAsLong()) {
            error(path, (ram >> 20) + " MiB", "guest RAM exceeds this host's memory (" + (hostMemoryBytes
                    .getAsLong() >> 20) + " MiB in /proc/meminfo MemTotal)");
        }
        return regions;
    }

    /** The guest of {@code kind} and, for a Linux guest, its kernel, initrd and command line. */
    private VmSpec.Guest linuxGuest(String program, int workload, GuestKind kind) {
        String at = ROOT + ".guest";
        String kernel = string(at + ".kernel");
        String initrd = string(at + ".initrd");
        String cmdline = string(at + ".cmdline");
        if (kind == GuestKind.LINUX) {
            if (kernel != null && !kernel.equals(VmSpec.Guest.AUTO)) {
                readableFile(at + ".kernel", kernel, "the kernel image");
            }
            if (initrd != null && !initrd.equals(VmSpec.Guest.AUTO) && !initrd.equals(VmSpec.Guest.NONE)) {
                readableFile(at + ".initrd", initrd, "the initrd");
            }
            if (cmdline != null && !cmdline.chars().allMatch(c -> c >= 0x20 && c < 0x7f)) {
                error(at + ".cmdline", cmdline, "the kernel command line must be printable ASCII");
            }
        }
        return new VmSpec.Guest(program, workload, kind, kernel == null ? VmSpec.Guest.AUTO : kernel,
                initrd == null ? VmSpec.Guest.AUTO : initrd, cmdline == null ? "" : cmdline);
    }

    private void readableFile(String path, String value, String what) {
        Path file = Path.of(value);
        if (!Files.isRegularFile(file)) {
            error(path, value, "no such file (" + what + "; or \"auto\")");
        } else if (!Files.isReadable(file)) {
            error(path, value, what + " is not readable");
        }
    }

    private VmSpec.Firmware firmware() {
        String path = ROOT + ".firmware";
        String value = string(path);
        if (value == null || value.equals("bundled")) {
            return VmSpec.Firmware.BUNDLED;
        }
        Path file = Path.of(value);
        if (!Files.isRegularFile(file)) {
            error(path, value, "no such firmware file (use \"bundled\" for the image built into actovisor)");
        } else if (!Files.isReadable(file)) {
            error(path, value, "the firmware file is not readable");
        }
        return new VmSpec.Firmware(Optional.of(file));
    }

    private List<VmSpec.Container> containers() {
        String path = ROOT + ".vfio.containers";
        List<? extends Config> list = objects(path);
        List<VmSpec.Container> containers = new ArrayList<>();
        Map<String, String> containerNames = new HashMap<>();
        Map<String, String> groupOwners = new HashMap<>();
        for (int i = 0; i < list.size(); i++) {
            Config c = list.get(i);
            String at = path + "[" + i + "]";
            String name = string(c, at, "name", null);
            if (name != null && !PART_NAME.matcher(name).matches()) {
                error(at + ".name", name, PART_NAME_RULE);
                name = null;
            }
            if (name != null && containerNames.putIfAbsent(name, at) != null) {
                error(at + ".name", name, "another container is already called '" + name + "' ("
                        + containerNames.get(name) + ")");
            }
            VmSpec.Backend backend = enumOf(c, at, "backend", "model", VmSpec.Backend.class,
                    VmSpec.Backend::configName);
            int maxMappings = intIn(c, at, "max-mappings", 65535, 1, Integer.MAX_VALUE);
            VmSpec.Discard discard = enumOf(c, at, "discard", "inhibit", VmSpec.Discard.class,
                    VmSpec.Discard::configName);
            long blockSize = discardBlockSize(c, at);
            List<VmSpec.Group> groups = new ArrayList<>();
            List<? extends Config> groupList = c.hasPath("groups") ? objects(c, at + ".groups", "groups") : List.of();
            for (int g = 0; g < groupList.size(); g++) {
                Config gc = groupList.get(g);
                String gat = at + ".groups[" + g + "]";
                String id = string(gc, gat, "id", null);
                if (id == null) {
                    continue;
                }
                if (!PART_NAME.matcher(id).matches()) {
                    error(gat + ".id", id, PART_NAME_RULE);
                    continue;
                }
                String owner = groupOwners.putIfAbsent(id, gat);
                if (owner != null) {
                    error(gat + ".id", id, "group " + id + " is already in another container (" + owner + "); a "
                            + "group belongs to one container");
                }
                if (backend == VmSpec.Backend.VFIO_TYPE1 && !id.matches("[0-9]+")) {
                    error(gat + ".id", id, "a vfio-type1 group id is the number of /dev/vfio/<id>");
                }
                if (gc.hasPath("balloon-compatible")) {
                    error(gat + ".balloon-compatible", render(gc, "balloon-compatible"), "was replaced by the "
                            + "container's discard mode: set discard = on-demand on container " + at
                            + " for devices that pin on demand");
                }
                Optional<VmSpec.Discard> declared = gc.hasPath("discard")
                        ? Optional.ofNullable(enumOf(gc, gat, "discard", null, VmSpec.Discard.class,
                                VmSpec.Discard::configName))
                        : Optional.empty();
                groups.add(new VmSpec.Group(id, declared, bool(gc, gat, "attach-at-start", true)));
            }
            if (name != null && backend != null && discard != null) {
                containers.add(new VmSpec.Container(name, backend, maxMappings, groups, discard, blockSize));
            }
        }
        return containers;
    }

    /** {@code discard-block-size}: 2 MiB unless set; a power of two of at least 4 KiB. */
    private long discardBlockSize(Config c, String at) {
        if (!c.hasPath("discard-block-size")) {
            return DEFAULT_DISCARD_BLOCK;
        }
        OptionalLong size = bytes(c, at + ".discard-block-size", "discard-block-size");
        if (size.isPresent() && (size.getAsLong() < PAGE || Long.bitCount(size.getAsLong()) != 1)) {
            error(at + ".discard-block-size", render(c, "discard-block-size"), "must be a power of two of at "
                    + "least 4 KiB, such as 2 MiB");
        }
        return size.orElse(DEFAULT_DISCARD_BLOCK);
    }

    private VmSpec.Balloon balloon(List<VmSpec.Region> memory) {
        String at = ROOT + ".balloon";
        boolean enabled = bool(at + ".enabled");
        OptionalLong target = bytes(config, at + ".initial-target", at + ".initial-target");
        long ram = memory.stream().filter(r -> r.kind() == RegionKind.RAM).mapToLong(r -> r.range().size()).sum();
        if (target.isPresent() && (target.getAsLong() < 0 || target.getAsLong() % PAGE != 0)) {
            error(at + ".initial-target", render(config, at + ".initial-target"), "must be a multiple of 4 KiB");
        } else if (target.isPresent() && target.getAsLong() > ram) {
            error(at + ".initial-target", render(config, at + ".initial-target"), "exceeds guest RAM (" + (ram >> 20)
                    + " MiB)");
        }
        Duration polling = duration(at + ".stats-polling-interval");
        if (polling != null && (polling.isNegative() || polling.isZero())) {
            error(at + ".stats-polling-interval", render(config, at + ".stats-polling-interval"),
                    "must be positive");
        }
        OptionalLong base = address(config.getConfig(at), at, "mmio-base", null);
        if (enabled && base.isPresent() && memory.stream().noneMatch(r -> r.kind() == RegionKind.MMIO
                && r.range().base() == base.getAsLong() && r.device().orElse("").equals("balloon"))) {
            error(at + ".mmio-base", hex(base.getAsLong()), "no mmio region with device = \"balloon\" starts there; "
                    + "add one to memory");
        }
        return new VmSpec.Balloon(enabled, target.orElse(0), bool(at + ".deflate-on-oom"), polling,
                bool(at + ".unsafe-ignore-inhibitor"), base.orElse(0), bool(at + ".free-page-reporting"));
    }

    private VmSpec.Devices devices(List<VmSpec.Container> containers, List<VmSpec.Region> memory) {
        String at = ROOT + ".devices";
        boolean serial = bool(at + ".serial");
        Optional<VmSpec.Dma> dma = Optional.empty();
        if (bool(at + ".dma.enabled")) {
            String group = string(at + ".dma.group");
            if (group != null && containers.stream().flatMap(c -> c.groups().stream())
                    .noneMatch(g -> g.id().equals(group))) {
                error(at + ".dma.group", group, "no VFIO group with this id is configured in vfio.containers");
            }
            OptionalLong base = address(config.getConfig(at + ".dma"), at + ".dma", "mmio-base", null);
            if (base.isPresent() && memory.stream().noneMatch(r -> r.kind() == RegionKind.MMIO
                    && r.range().base() == base.getAsLong())) {
                error(at + ".dma.mmio-base", hex(base.getAsLong()), "no mmio region starts there; add one to memory "
                        + "with device = \"dma\"");
            }
            if (group != null && base.isPresent()) {
                dma = Optional.of(new VmSpec.Dma(group, base.getAsLong()));
            }
        }
        return new VmSpec.Devices(serial, dma, blk(containers, memory));
    }

    /** {@code devices.blk}: a RAM disk of 1 to 1024 MiB, its MMIO region, and the container its DMA goes through. */
    private Optional<VmSpec.Blk> blk(List<VmSpec.Container> containers, List<VmSpec.Region> memory) {
        String at = ROOT + ".devices.blk";
        if (!config.hasPath(at) || !bool(at + ".enabled")) {
            return Optional.empty();
        }
        int mib = intIn(at + ".size-mib", 1, 1024);
        String container = string(at + ".container");
        if (container != null && !container.isEmpty()
                && containers.stream().noneMatch(c -> c.name().equals(container))) {
            error(at + ".container", container, "no VFIO container with this name is configured in vfio.containers "
                    + "(empty: the device reaches guest memory directly)");
        }
        OptionalLong base = address(config.getConfig(at), at, "mmio-base", null);
        if (base.isPresent() && memory.stream().noneMatch(r -> r.kind() == RegionKind.MMIO
                && r.range().base() == base.getAsLong() && r.device().orElse("").equals("blk"))) {
            error(at + ".mmio-base", hex(base.getAsLong()), "no mmio region with device = \"blk\" starts there; "
                    + "add one to memory");
        }
        if (base.isEmpty() || container == null) {
            return Optional.empty();
        }
        return Optional.of(new VmSpec.Blk((long) mib << 20, base.getAsLong(),
                container.isEmpty() ? Optional.empty() : Optional.of(container)));
    }

    private VmSpec.Api api() {
        String at = ROOT + ".api";
        String host = string(at + ".host");
        int port = intIn(at + ".port", 0, 65535);
        boolean allowRemote = bool(at + ".allow-remote");
        String token = string(at + ".token");
        Optional<String> tok = token == null || token.isBlank() ? Optional.empty() : Optional.of(token);
        if (host != null && !isLoopback(host) && !(allowRemote && tok.isPresent())) {
            error(at + ".host", host, "is not a loopback address; a remote API needs allow-remote = true and a "
                    + "token");
        }
        if (allowRemote && tok.isEmpty()) {
            error(at + ".allow-remote", "true", "a remote API needs a token");
        }
        return new VmSpec.Api(bool(at + ".enabled"), host, port, allowRemote, tok);
    }

    private static boolean isLoopback(String host) {
        return host.equals("localhost") || host.equals("::1") || host.startsWith("127.");
    }

    // --- typed reads that record errors ---

    private void error(String path, String value, String message) {
        errors.add(new ConfigError(path, ConfigErrors.isSecret(path) && value != null ? ConfigErrors.REDACTED
                : ConfigErrors.abbreviate(value), message));
    }

    private static String render(ConfigValue value) {
        return ConfigErrors.asWritten(value);
    }

    private String render(Config c, String key) {
        return c.hasPath(key) ? render(c.getValue(key)) : null;
    }

    private static String safeString(Config c, String key) {
        try {
            return c.getString(key);
        } catch (ConfigException e) {
            return null;
        }
    }

    private static String hex(long value) {
        return "0x" + Long.toHexString(value);
    }

    private String string(String path) {
        return read(config, path, path, null, true);
    }

    private String string(Config c, String at, String key, String fallback) {
        return read(c, at + "." + key, key, fallback, false);
    }

    /** The string at {@code key} of {@code c}; errors name {@code shown}. */
    private String read(Config c, String shown, String key, String fallback, boolean mayBeEmpty) {
        if (!c.hasPath(key)) {
            if (fallback == null) {
                error(shown, null, "missing");
            }
            return fallback;
        }
        ConfigValue v = c.getValue(key);
        if (v.valueType() == ConfigValueType.OBJECT || v.valueType() == ConfigValueType.LIST) {
            error(shown, render(v), "must be a string");
            return null;
        }
        String s = c.getString(key);
        if (s.isBlank() && !mayBeEmpty) {
            error(shown, render(v), "must not be empty");
            return null;
        }
        return s;
    }

    private boolean bool(String path) {
        return readBool(config, path, path, false);
    }

    private boolean bool(Config c, String at, String key, boolean fallback) {
        return readBool(c, at + "." + key, key, fallback);
    }

    private boolean readBool(Config c, String shown, String key, boolean fallback) {
        if (!c.hasPath(key)) {
            return fallback;
        }
        try {
            return c.getBoolean(key);
        } catch (ConfigException.WrongType e) {
            error(shown, render(c.getValue(key)), "must be true or false");
            return fallback;
        }
    }

    private int intIn(String path, int min, int max) {
        return readInt(config, path, path, 0, min, max);
    }

    private int intIn(Config c, String at, String key, int fallback, int min, int max) {
        return readInt(c, at + "." + key, key, fallback, min, max);
    }

    private int readInt(Config c, String shown, String key, int fallback, int min, int max) {
        if (!c.hasPath(key)) {
            return fallback;
        }
        long value;
        ConfigValue written = c.getValue(key);
        try {
            value = c.getLong(key);
        } catch (ConfigException.WrongType | ConfigException.BadValue e) {
            error(shown, render(written), "must be a whole number");
            return fallback;
        }
        if (written.unwrapped() instanceof Double || written.unwrapped() instanceof String text
                && !text.trim().matches("[+-]?[0-9]+")) {
            // HOCON truncates 1.5 to 1 and saturates 1e30 to Long.MAX_VALUE: refuse instead, showing what was written.
            error(shown, render(written), "must be a whole number between " + min + " and " + max);
            return fallback;
        }
        if (value < min || value > max) {
            error(shown, render(written), "must be between " + min + " and " + max);
            return fallback;
        }
        return (int) value;
    }

    /** A HOCON size at {@code key} of {@code c}; errors name {@code shown}. */
    private OptionalLong bytes(Config c, String shown, String key) {
        if (!c.hasPath(key)) {
            error(shown, null, "missing");
            return OptionalLong.empty();
        }
        try {
            return OptionalLong.of(c.getBytes(key));
        } catch (ConfigException e) {
            error(shown, render(c.getValue(key)), "must be a size such as 64 MiB or 4096");
            return OptionalLong.empty();
        }
    }

    private Duration duration(String path) {
        try {
            return config.getDuration(path);
        } catch (ConfigException e) {
            error(path, render(config.getValue(path)), "must be a duration such as 5s or 500ms");
            return null;
        }
    }

    private OptionalLong address(Config c, String at, String key, Long fallback) {
        if (!c.hasPath(key)) {
            if (fallback == null) {
                error(at + "." + key, null, "missing");
                return OptionalLong.empty();
            }
            return OptionalLong.of(fallback);
        }
        ConfigValue v = c.getValue(key);
        String text = v.unwrapped().toString().trim().replace("_", "");
        try {
            if (text.startsWith("0x") || text.startsWith("0X")) {
                return OptionalLong.of(Long.parseUnsignedLong(text.substring(2), 16));
            }
            long value = Long.parseLong(text);
            if (value < 0) {
                throw new NumberFormatException();
            }
            return OptionalLong.of(value);
        } catch (NumberFormatException e) {
            error(at + "." + key, render(v), "must be an address: \"0x...\" or a non-negative number");
            return OptionalLong.empty();
        }
    }

    private <E extends Enum<E>> E enumOf(Config c, String at, String key, String fallback, Class<E> type,
            Function<E, String> spelling) {
        String value = c.hasPath(key) ? safeString(c, key) : fallback;
        for (E e : type.getEnumConstants()) {
            if (spelling.apply(e).equals(value)) {
                return e;
            }
        }
        List<String> valid = java.util.Arrays.stream(type.getEnumConstants()).map(spelling).toList();
        error(at + "." + key, c.hasPath(key) ? render(c.getValue(key)) : null, "must be one of " + valid);
        return null;
    }

    private List<? extends Config> objects(String path) {
        return objects(config, path, path);
    }

    private List<? extends Config> objects(Config c, String shown, String key) {
        try {
            return c.getConfigList(key);
        } catch (ConfigException.WrongType e) {
            error(shown, render(c.getValue(key)), "must be a list of objects");
            return List.of();
        }
    }

    /** Reads {@code /proc/meminfo}, so that a VM cannot ask for more RAM than the host has. */
    static final class HostLimits {
        private HostLimits() {
        }

        static OptionalLong memTotalBytes() {
            try {
                for (String line : Files.readAllLines(Path.of("/proc/meminfo"))) {
                    if (line.startsWith("MemTotal:")) {
                        return OptionalLong.of(Long.parseLong(line.replaceAll("[^0-9]", "")) * 1024);
                    }
                }
            } catch (IOException | NumberFormatException e) {
                // Unknown host memory: the check is skipped.
            }
            return OptionalLong.empty();
        }
    }
}
