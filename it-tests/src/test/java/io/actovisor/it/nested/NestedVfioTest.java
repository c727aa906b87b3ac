package io.actovisor.it.nested;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.actovisor.memory.testing.GuestImages;
import io.actovisor.memory.testing.NativeRequirement;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The seed's scenario under real VFIO type1 pins: a nested guest with an emulated IOMMU and QEMU's edu device runs
 * {@code ./actovisor vfio-edu-demo} (this project's entry point, from the test's own class path over 9p) against its
 * real {@code /dev/vfio}, and the findings come back as JSON lines on a serial port.
 */
class NestedVfioTest {
    private static final Logger LOG = LoggerFactory.getLogger(NestedVfioTest.class);
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final List<String> EXPECTED = List.of(
            "device",
            "inhibited: group attached and guest RAM mapped",
            "inhibited: VFIO_IOMMU_GET_INFO and the RAM mapping",
            "inhibited: device info, regions, bus mastering, BAR0",
            "inhibited: overlap refused with EEXIST",
            "inhibited: misalignment refused before the kernel",
            "inhibited: misalignment refused by the kernel with EINVAL",
            "inhibited: mapping limit refused with ENOSPC",
            "inhibited: the device reads what the CPU wrote",
            "inhibited: the discard is skipped and the device reads the CPU's new data",
            "inhibited: fds and pins released at stop",
            "unsafe-ignore-inhibitor: group attached and guest RAM mapped",
            "unsafe-ignore-inhibitor: VFIO_IOMMU_GET_INFO and the RAM mapping",
            "unsafe-ignore-inhibitor: device info, regions, bus mastering, BAR0",
            "unsafe-ignore-inhibitor: the device reads what the CPU wrote",
            "unsafe-ignore-inhibitor: discarded under the pin: the device reads the old page, the CPU the new one",
            "unsafe-ignore-inhibitor: fds and pins released at stop");

    private static GuestImages.Facilities facilities;

    @BeforeAll
    static void probe() {
        facilities = NestedGuest.probe();
        NativeRequirement.require("a nested QEMU guest with an IOMMU and the edu device",
                facilities.unavailabilityCause());
    }

    @Test
    void seedsScenarioReproducesUnderRealType1Pins() throws Exception {
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        String classPath = System.getProperty("java.class.path");
        List<String> words = new ArrayList<>(List.of(java, "-Xmx256m", "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData", "-Djava.io.tmpdir=/dev/shm", "-Djna.tmpdir=/dev/shm"));
        words.addAll(NestedGuest.logbackOption());
        words.addAll(List.of("-cp", classPath, "io.actovisor.demos.DemosMain", "vfio-edu-demo"));
        String command = String.join(" ", words);
        Path work = Path.of("target", "nested").toAbsolutePath();
        NestedGuest.Outcome outcome = NestedGuest.run(facilities, work, command, Duration.ofSeconds(120),
                Duration.ofSeconds(420));
        LOG.info("nested guest: booted in {} ms, the scenario ran {} ms", outcome.bootTime().toMillis(),
                outcome.runTime().toMillis());

        Map<String, JsonNode> findings = new LinkedHashMap<>();
        JsonNode summary = null;
        for (String line : outcome.output()) {
            JsonNode node = JSON.readTree(line);
            if (node.has("summary")) {
                summary = node;
            } else {
                findings.put(node.get("step").asText(), node);
            }
        }
        if (summary == null) {
            fail("the scenario wrote no summary; its output:\n" + String.join("\n", outcome.output())
                    + "\n--- console ---\n" + outcome.console());
        }
        assertEquals(EXPECTED, new ArrayList<>(findings.keySet()), "the steps, in order; console:\n"
                + outcome.console());
        List<String> failed = findings.values().stream().filter(f -> !f.get("holds").asBoolean())
                .map(JsonNode::toString).toList();
        assertEquals(List.of(), failed, "findings that do not hold");
        assertEquals(0, summary.get("failed").asInt());
        assertEquals(0, outcome.exitStatus().orElse(-1), "the entry point's exit status");

        JsonNode inhibited = findings.get(EXPECTED.get(9)).get("details");
        assertEquals("B", inhibited.get("device").asText());
        assertEquals(1, inhibited.get("pagesSkipped").asInt());
        JsonNode unsafe = findings.get(EXPECTED.get(15)).get("details");
        assertEquals("A", unsafe.get("device").asText(), "the device reads the old, still-pinned page");
        assertEquals("B", unsafe.get("cpu").asText(), "the CPU reads its new page");
        assertTrue(!unsafe.get("pfnBefore").asText().equals(unsafe.get("pfnAfter").asText()),
                "the CPU's page moved: " + unsafe);
        JsonNode info = findings.get(EXPECTED.get(2)).get("details");
        assertEquals(NestedGuest.DMA_ENTRY_LIMIT - 1, info.get("dmaAvailable").asInt(),
                "type1 reports the limit the guest loaded it with, less the RAM mapping");
    }
}
