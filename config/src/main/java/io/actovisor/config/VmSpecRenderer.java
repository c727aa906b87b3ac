package io.actovisor.config;

import io.actovisor.memory.RegionKind;
import java.util.Locale;
import java.util.stream.Collectors;

/**
 * Renders a {@link VmSpec} as normalized HOCON: every key explicit, sizes in the largest exact binary unit,
 * addresses in hex. {@code VmSpecParser.parseString(render(spec))} gives {@code spec} back.
 */
public final class VmSpecRenderer {
    private VmSpecRenderer() {
    }

    public static String render(VmSpec spec) {
        StringBuilder out = new StringBuilder();
        out.append("actovisor.vm {\n");
        out.append("  name = ").append(quote(spec.name())).append('\n');
        out.append("  vcpus = ").append(spec.vcpus()).append('\n');
        out.append("  memory = [\n");
        for (VmSpec.Region r : spec.memory()) {
            out.append("    { name = ").append(quote(r.name()))
                    .append(", kind = ").append(r.kind().name().toLowerCase(Locale.ROOT))
                    .append(", base = \"0x").append(Long.toHexString(r.range().base())).append('"')
                    .append(", size = ").append(size(r.range().size()));
            r.backing().ifPresent(b -> out.append(", backing = ").append(b.name().toLowerCase(Locale.ROOT)));
            if (r.kind() != RegionKind.ROM) {
                out.append(", read-only = ").append(r.readOnly());
            }
            r.device().ifPresent(d -> out.append(", device = ").append(quote(d)));
            out.append(" }\n");
        }
        out.append("  ]\n");
        out.append("  firmware = ").append(quote(spec.firmware().file().map(Object::toString).orElse("bundled")))
                .append('\n');
        out.append("  guest { kind = ").append(spec.guest().kind().configName()).append(", program = ")
                .append(quote(spec.guest().program())).append(", workload-mib = ")
                .append(spec.guest().workloadMib()).append(", kernel = ").append(quote(spec.guest().kernel()))
                .append(", initrd = ").append(quote(spec.guest().initrd())).append(", cmdline = ")
                .append(quote(spec.guest().cmdline())).append(" }\n");
        out.append("  vfio {\n    containers = [\n");
        for (VmSpec.Container c : spec.containers()) {
            out.append("      { name = ").append(quote(c.name())).append(", backend = ")
                    .append(c.backend().configName()).append(", max-mappings = ").append(c.maxMappings())
                    .append(", discard = ").append(c.discard().configName()).append(", discard-block-size = ")
                    .append(c.discardBlockSize())
                    .append(", groups = [")
                    .append(c.groups().stream().map(g -> " { id = " + quote(g.id())
                            + g.discard().map(d -> ", discard = " + d.configName()).orElse("")
                            + ", attach-at-start = " + g.attachAtStart() + " }")
                            .collect(Collectors.joining(",")))
                    .append(c.groups().isEmpty() ? "] }\n" : " ] }\n");
        }
        out.append("    ]\n  }\n");
        VmSpec.Balloon b = spec.balloon();
        out.append("  balloon {\n")
                .append("    enabled = ").append(b.enabled()).append('\n')
                .append("    initial-target = ").append(size(b.initialTargetBytes())).append('\n')
                .append("    deflate-on-oom = ").append(b.deflateOnOom()).append('\n')
                .append("    stats-polling-interval = ").append(b.statsPollingInterval().toMillis()).append("ms\n")
                .append("    unsafe-ignore-inhibitor = ").append(b.unsafeIgnoreInhibitor()).append('\n')
                .append("    mmio-base = \"0x").append(Long.toHexString(b.mmioBase())).append("\"\n")
                .append("    free-page-reporting = ").append(b.freePageReporting()).append('\n')
                .append("  }\n");
        out.append("  devices {\n    serial = ").append(spec.devices().serial()).append('\n');
        spec.devices().dma().ifPresentOrElse(d -> out.append("    dma { enabled = true, group = ")
                .append(quote(d.group())).append(", mmio-base = \"0x").append(Long.toHexString(d.mmioBase()))
                .append("\" }\n"), () -> out.append("    dma { enabled = false }\n"));
        out.append("  }\n");
        VmSpec.Api a = spec.api();
        out.append("  api {\n")
                .append("    enabled = ").append(a.enabled()).append('\n')
                .append("    host = ").append(quote(a.host())).append('\n')
                .append("    port = ").append(a.port()).append('\n')
                .append("    allow-remote = ").append(a.allowRemote()).append('\n')
                .append("    token = ").append(quote(a.token().orElse(""))).append('\n')
                .append("  }\n");
        out.append("}\n");
        return out.toString();
    }

    /** A size in the largest binary unit that divides it exactly. */
    static String size(long bytes) {
        String[] units = {"GiB", "MiB", "KiB"};
        int[] shifts = {30, 20, 10};
        for (int i = 0; i < units.length; i++) {
            long unit = 1L << shifts[i];
            if (bytes != 0 && bytes % unit == 0) {
                return (bytes / unit) + " " + units[i];
            }
        }
        return Long.toString(bytes);
    }

    private static String quote(String s) {
        return "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"") + "\"";
    }
}
