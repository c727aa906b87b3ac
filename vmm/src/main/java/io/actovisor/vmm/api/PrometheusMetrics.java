package io.actovisor.vmm.api;

import io.actovisor.vmm.api.model.Balloon;
import io.actovisor.vmm.api.model.VfioState;
import io.actovisor.vmm.BuildInfo;
import io.prometheus.metrics.expositionformats.PrometheusTextFormatWriter;
import io.prometheus.metrics.instrumentation.jvm.JvmMetrics;
import io.prometheus.metrics.model.registry.PrometheusRegistry;
import io.prometheus.metrics.model.snapshots.CounterSnapshot;
import io.prometheus.metrics.model.snapshots.GaugeSnapshot;
import io.prometheus.metrics.model.snapshots.InfoSnapshot;
import io.prometheus.metrics.model.snapshots.Labels;
import io.prometheus.metrics.model.snapshots.MetricSnapshot;
import io.prometheus.metrics.model.snapshots.MetricSnapshots;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;

/**
 * {@code GET /metrics} through Prometheus' Java client: the VM's numbers (one family per metric, a sample per
 * vCPU, container or reason), build info, and the client's JVM and process metrics, in text format 0.0.4.
 */
public final class PrometheusMetrics {
    /** {@code text/plain; version=0.0.4; charset=utf-8}. */
    public static final String CONTENT_TYPE = PrometheusTextFormatWriter.CONTENT_TYPE;
    private static final List<String> STATES = List.of("Not started", "Running", "Paused", "Stopping");

    private final PrometheusRegistry registry = new PrometheusRegistry();
    private final PrometheusTextFormatWriter writer = PrometheusTextFormatWriter.create();

    public PrometheusMetrics() {
        JvmMetrics.builder().register(registry);
    }

    /** The exposition text of {@code m} together with the JVM's and the process's metrics. */
    public String render(VmManagement.VmMetrics m) {
        MetricSnapshots.Builder all = MetricSnapshots.builder();
        vmSnapshots(m).forEach(all::metricSnapshot);
        registry.scrape().forEach(all::metricSnapshot);
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        try {
            writer.write(out, all.build());
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return out.toString(StandardCharsets.UTF_8);
    }

    static List<MetricSnapshot> vmSnapshots(VmManagement.VmMetrics m) {
        List<MetricSnapshot> out = new java.util.ArrayList<>();
        out.add(InfoSnapshot.builder().name("actovisor_build").help("The actovisor build serving this VM")
                .dataPoint(InfoSnapshot.InfoDataPointSnapshot.builder().labels(Labels.of("version",
                        BuildInfo.version(), "vm", m.vm().name())).build()).build());
        GaugeSnapshot.Builder state = GaugeSnapshot.builder().name("actovisor_vm_state")
                .help("1 for the VM's current state, 0 for the others");
        for (String s : STATES) {
            state.dataPoint(point(Labels.of("state", s), s.equals(m.vm().state()) ? 1 : 0));
        }
        out.add(state.build());
        out.add(gauge("actovisor_vm_vcpus", "vCPUs of the VM", m.vm().vcpuCount()));
        out.add(gauge("actovisor_guest_memory_bytes", "Guest RAM", m.vm().memSizeMib() << 20));
        out.add(gauge("actovisor_vm_uptime_seconds", "Seconds since the VM started", m.vm().uptimeMs() / 1000.0));
        if (m.balloon().isPresent()) {
            Balloon b = m.balloon().get();
            out.add(gauge("actovisor_balloon_target_bytes", "Balloon target", b.targetBytes()));
            out.add(gauge("actovisor_balloon_actual_bytes", "Memory the guest has given up", b.actualBytes()));
            out.add(gauge("actovisor_balloon_inhibitors", "Holders that disable the balloon's discards",
                    b.inhibitors()));
            out.add(counter("actovisor_balloon_discards", "Discards done", b.discards()));
            out.add(counter("actovisor_balloon_discards_skipped", "Discards skipped because a holder disabled them",
                    b.discardsSkipped()));
            out.add(counter("actovisor_balloon_pages_discarded", "Pages discarded", b.pagesDiscarded()));
            out.add(counter("actovisor_balloon_pages_skipped", "Pages not discarded because a holder disabled "
                    + "discards", b.pagesSkipped()));
        }
        m.discard().ifPresent(d -> out.addAll(DiscardMetrics.snapshots(d)));
        GaugeSnapshot.Builder mappings = GaugeSnapshot.builder().name("actovisor_iommu_mappings")
                .help("IOMMU mappings of each VFIO container");
        GaugeSnapshot.Builder pinned = GaugeSnapshot.builder().name("actovisor_iommu_pinned_bytes")
                .help("Bytes pinned by each VFIO container's IOMMU");
        for (VfioState.Container c : m.vfio().containers()) {
            mappings.dataPoint(point(Labels.of("container", c.name()), c.mappings().size()));
            pinned.dataPoint(point(Labels.of("container", c.name()), c.pinnedBytes()));
        }
        out.add(mappings.build());
        out.add(pinned.build());
        out.add(gauge("actovisor_vfio_groups_attached", "VFIO groups attached",
                m.vfio().groups().stream().filter(VfioState.Group::attached).count()));
        CounterSnapshot.Builder exits = CounterSnapshot.builder().name("actovisor_vcpu_exits")
                .help("vCPU exits by reason");
        CounterSnapshot.Builder unclaimed = CounterSnapshot.builder().name("actovisor_vcpu_unclaimed_accesses")
                .help("Port and MMIO accesses no device claimed");
        for (VmManagement.VcpuCounters v : m.vcpus()) {
            String id = Integer.toString(v.id());
            for (Map.Entry<String, Long> e : v.exits().entrySet()) {
                exits.dataPoint(CounterSnapshot.CounterDataPointSnapshot.builder()
                        .labels(Labels.of("vcpu", id, "reason", e.getKey())).value(e.getValue()).build());
            }
            unclaimed.dataPoint(CounterSnapshot.CounterDataPointSnapshot.builder().labels(Labels.of("vcpu", id))
                    .value(v.unclaimed()).build());
        }
        out.add(exits.build());
        out.add(unclaimed.build());
        out.add(counter("actovisor_topology_commits", "Memory topology commits applied", m.commits()));
        out.add(counter("actovisor_topology_commits_refused", "Memory topology commits refused",
                m.refusedCommits()));
        return out;
    }

    private static GaugeSnapshot.GaugeDataPointSnapshot point(Labels labels, double value) {
        return GaugeSnapshot.GaugeDataPointSnapshot.builder().labels(labels).value(value).build();
    }

    private static GaugeSnapshot gauge(String name, String help, double value) {
        return GaugeSnapshot.builder().name(name).help(help).dataPoint(point(Labels.EMPTY, value)).build();
    }

    private static CounterSnapshot counter(String name, String help, double value) {
        return CounterSnapshot.builder().name(name).help(help).dataPoint(CounterSnapshot.CounterDataPointSnapshot
                .builder().value(value).build()).build();
    }
}
