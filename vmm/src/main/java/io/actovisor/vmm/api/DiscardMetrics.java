package io.actovisor.vmm.api;

import io.actovisor.actors.discard.DiscardState;
import io.prometheus.metrics.model.snapshots.CounterSnapshot;
import io.prometheus.metrics.model.snapshots.GaugeSnapshot;
import io.prometheus.metrics.model.snapshots.Labels;
import io.prometheus.metrics.model.snapshots.MetricSnapshot;
import java.util.ArrayList;
import java.util.List;

/**
 * The discard manager's {@link DiscardState} as Prometheus families (names in docs/discard.md and
 * docs/rest-api.md): the same schema as {@code GET /discard}, one family per quantity, outcomes as labels.
 */
final class DiscardMetrics {
    private DiscardMetrics() {
    }

    static List<MetricSnapshot> snapshots(DiscardState d) {
        List<MetricSnapshot> out = new ArrayList<>();
        out.add(GaugeSnapshot.builder().name("actovisor_discard_holders")
                .help("Discard holders registered with the VM's discard manager, by kind (draining ones included)")
                .dataPoint(gaugePoint(Labels.of("kind", "uncoordinated"), d.uncoordinatedHolders()))
                .dataPoint(gaugePoint(Labels.of("kind", "coordinated"), d.coordinatedHolders())).build());
        out.add(gauge("actovisor_discard_guest_tells_host",
                "1 when the guest driver negotiated VIRTIO_BALLOON_F_MUST_TELL_HOST", d.guestTellsHost() ? 1 : 0));
        out.add(gauge("actovisor_discard_block_size_bytes", "The block coordinated containers unmap and map again",
                d.blockSize()));
        out.add(CounterSnapshot.builder().name("actovisor_discard_requests")
                .help("Balloon discard requests by the manager's decision")
                .dataPoint(counterPoint(Labels.of("decision", "granted"), d.discardsGranted()))
                .dataPoint(counterPoint(Labels.of("decision", "refused"), d.discardsRefused()))
                .dataPoint(counterPoint(Labels.of("decision", "held"), d.discardsHeld())).build());
        out.add(CounterSnapshot.builder().name("actovisor_discard_bytes")
                .help("Bytes the balloon asked to discard, by outcome")
                .dataPoint(counterPoint(Labels.of("outcome", "discarded"), d.bytesDiscarded()))
                .dataPoint(counterPoint(Labels.of("outcome", "refused"), d.bytesRefused())).build());
        out.add(gauge("actovisor_discard_held_bytes", "Bytes held until their block completes or its containers "
                + "acknowledge", d.bytesHeld()));
        out.add(gauge("actovisor_discard_blocks_unmapped", "Blocks unmapped in every coordinated container and "
                + "discarded", d.blocksUnmapped()));
        out.add(CounterSnapshot.builder().name("actovisor_discard_failures")
                .help("Block releases a container refused or did not acknowledge in time, and failed remaps")
                .dataPoint(counterPoint(Labels.of("operation", "release"), d.blockReleaseFailures()))
                .dataPoint(counterPoint(Labels.of("operation", "remap"), d.remapFailures())).build());
        GaugeSnapshot.Builder fallbacks = GaugeSnapshot.builder().name("actovisor_discard_fallbacks")
                .help("Coordinated holders counted as uncoordinated (1 each), with the reason");
        d.fallbacks().forEach(f -> fallbacks.dataPoint(gaugePoint(Labels.of("holder", f.holder(), "reason",
                f.reason()), 1)));
        out.add(fallbacks.build());
        out.add(CounterSnapshot.builder().name("actovisor_discard_free_page_reports")
                .help("Free page reports by the manager's decision (skipped while any holder is registered)")
                .dataPoint(counterPoint(Labels.of("decision", "discarded"), d.reportsGranted()))
                .dataPoint(counterPoint(Labels.of("decision", "skipped"), d.reportsSkipped())).build());
        out.add(CounterSnapshot.builder().name("actovisor_discard_free_page_report_bytes")
                .help("Bytes of reported free pages, by outcome")
                .dataPoint(counterPoint(Labels.of("outcome", "discarded"), d.reportedBytesDiscarded()))
                .dataPoint(counterPoint(Labels.of("outcome", "skipped"), d.reportedBytesSkipped())).build());
        return out;
    }

    private static GaugeSnapshot.GaugeDataPointSnapshot gaugePoint(Labels labels, double value) {
        return GaugeSnapshot.GaugeDataPointSnapshot.builder().labels(labels).value(value).build();
    }

    private static CounterSnapshot.CounterDataPointSnapshot counterPoint(Labels labels, double value) {
        return CounterSnapshot.CounterDataPointSnapshot.builder().labels(labels).value(value).build();
    }

    private static GaugeSnapshot gauge(String name, String help, double value) {
        return GaugeSnapshot.builder().name(name).help(help).dataPoint(gaugePoint(Labels.EMPTY, value)).build();
    }
}
