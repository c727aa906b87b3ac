package io.actovisor.vmm.api;

import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.actors.discard.DiscardManager;
import io.actovisor.actors.discard.DiscardState;
import io.prometheus.metrics.expositionformats.PrometheusTextFormatWriter;
import io.prometheus.metrics.model.snapshots.MetricSnapshots;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The discard state's numbers reach the exposition text under the names the docs give. */
class DiscardMetricsTest {
    @Test
    void everyQuantityOfTheDiscardStateIsExposed() throws Exception {
        DiscardState state = new DiscardState("vm-discard", 1, 2,
                List.of(new DiscardState.Holder("vfio-group:g0", DiscardManager.HolderKind.UNCOORDINATED_DISABLED,
                        false)), 2L << 20, true, 3, 4, 5, 6 << 20, 7 << 20, 8, 8 * 4096, 9, 10, 11,
                List.of(new DiscardState.Fallback("vfio-group:g1", "no \"MUST_TELL_HOST\"")), 12, 13, 14 << 20,
                15 << 20, "skipped (holders: vfio-group:g0)");
        MetricSnapshots.Builder all = MetricSnapshots.builder();
        DiscardMetrics.snapshots(state).forEach(all::metricSnapshot);
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        PrometheusTextFormatWriter.create().write(out, all.build());
        String text = out.toString(StandardCharsets.UTF_8);
        for (String line : List.of(
                "actovisor_discard_holders{kind=\"uncoordinated\"} 1.0",
                "actovisor_discard_holders{kind=\"coordinated\"} 2.0",
                "actovisor_discard_guest_tells_host 1.0",
                "actovisor_discard_block_size_bytes 2097152.0",
                "actovisor_discard_requests_total{decision=\"granted\"} 3.0",
                "actovisor_discard_requests_total{decision=\"refused\"} 4.0",
                "actovisor_discard_requests_total{decision=\"held\"} 5.0",
                "actovisor_discard_bytes_total{outcome=\"discarded\"} 6291456.0",
                "actovisor_discard_bytes_total{outcome=\"refused\"} 7340032.0",
                "actovisor_discard_held_bytes 32768.0",
                "actovisor_discard_blocks_unmapped 9.0",
                "actovisor_discard_failures_total{operation=\"release\"} 10.0",
                "actovisor_discard_failures_total{operation=\"remap\"} 11.0",
                "actovisor_discard_fallbacks{holder=\"vfio-group:g1\",reason=\"no \\\"MUST_TELL_HOST\\\"\"} 1.0",
                "actovisor_discard_free_page_reports_total{decision=\"discarded\"} 12.0",
                "actovisor_discard_free_page_reports_total{decision=\"skipped\"} 13.0",
                "actovisor_discard_free_page_report_bytes_total{outcome=\"discarded\"} 1.4680064E7",
                "actovisor_discard_free_page_report_bytes_total{outcome=\"skipped\"} 1.572864E7")) {
            assertTrue(text.contains(line + "\n"), "missing " + line + " in\n" + text);
        }
    }
}
