package io.actovisor.it.nested;

import static org.junit.jupiter.api.Assertions.assertEquals;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.actovisor.it.emulated.GuestTestRunner;
import io.actovisor.memory.testing.GuestImages;
import io.actovisor.memory.testing.NativeRequirement;
import java.io.IOException;
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
 * One boot of the nested VFIO guest (Debian's 6.1 kernel, intel-iommu, edu bound to vfio-pci, type1 loaded with
 * {@code dma_entry_limit=64}) runs JUnit classes inside it through {@link GuestTestRunner}: coordinated discard on
 * the real type1 backend ({@link CoordinatedType1InGuest}), the pinned backend's release of its pins on that kernel
 * ({@code PinReleaseTest}, {@code PinnedIommuTest}) and coordinated discard through the actor tree on pinned
 * ({@code CoordinatedPinnedResidencyTest}, {@code CoordinatedDiscardTest}). Every test they hold must pass there; a
 * skip counts as a failure (the guest runs them with {@code ACTOVISOR_REQUIRE_NATIVE=1}). The guest's console, with
 * the tests' log lines and the measured numbers, stays in {@code target/nested-type1/console.log}.
 */
class NestedCoordinatedType1Test {
    private static final Logger LOG = LoggerFactory.getLogger(NestedCoordinatedType1Test.class);
    private static final ObjectMapper JSON = new ObjectMapper();
    /** The classes the guest runs: the pinned ones are devices' (package-private, so named here). */
    private static final List<String> IN_GUEST = List.of(CoordinatedType1InGuest.class.getName(),
            "io.actovisor.devices.iommu.pinned.PinReleaseTest", "io.actovisor.devices.iommu.pinned.PinnedIommuTest",
            "io.actovisor.actors.discard.CoordinatedPinnedResidencyTest",
            "io.actovisor.actors.discard.CoordinatedDiscardTest");
    private static GuestImages.Facilities facilities;

    @BeforeAll
    static void probe() {
        facilities = NestedGuest.probe();
        NativeRequirement.require("a nested QEMU guest with an IOMMU and the edu device",
                facilities.unavailabilityCause());
    }

    @Test
    void coordinatedDiscardOnRealType1AndPinnedReleaseHoldInTheNestedGuest() throws Exception {
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        List<String> words = new ArrayList<>(List.of("export", "ACTOVISOR_REQUIRE_NATIVE=1", "HOME=/dev/shm;", "exec",
                java, "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData",
                "-Djava.io.tmpdir=/dev/shm", "-Djna.tmpdir=/dev/shm"));
        words.addAll(NestedGuest.logbackOption());
        words.addAll(List.of("-cp", "'" + System.getProperty("java.class.path") + "'",
                GuestTestRunner.class.getName()));
        for (String c : IN_GUEST) {
            words.add("'[engine:junit-jupiter]/[class:" + c + "]'");
        }
        Path work = Path.of("target", "nested-type1").toAbsolutePath();
        NestedGuest.Outcome outcome = NestedGuest.run(facilities, work, String.join(" ", words),
                Duration.ofSeconds(120), Duration.ofSeconds(600));
        LOG.info("nested type1 guest: booted in {} ms, the tests ran {} ms", outcome.bootTime().toMillis(),
                outcome.runTime().toMillis());

        Map<String, String> results = results(outcome.output());
        for (String c : IN_GUEST) {
            assertEquals(true, results.keySet().stream().anyMatch(k -> k.startsWith(c + "#")),
                    c + " reported its tests in the guest: " + results + "\n--- console ---\n"
                            + tail(outcome.console()));
        }
        Map<String, String> failed = new LinkedHashMap<>(results);
        failed.values().removeIf("SUCCESSFUL"::equals);
        assertEquals(Map.of(), failed, "tests that did not pass in the guest\n--- console ---\n"
                + tail(outcome.console()));
        assertEquals(0, outcome.exitStatus().orElse(-1), "the guest test runner's exit status");
    }

    /** Test (class#name) to its status, or to the failure's class and message, from the runner's event lines. */
    private static Map<String, String> results(List<String> lines) throws IOException {
        Map<String, String> results = new LinkedHashMap<>();
        for (String line : lines) {
            if (!line.startsWith("{")) {
                continue;
            }
            JsonNode event = JSON.readTree(line);
            String kind = event.path("event").asText();
            JsonNode source = event.path("source");
            if (!event.path("type").asText().equals("TEST") || !source.has("method")) {
                if (kind.equals("runner-failed")) {
                    results.put("runner#failed", event.path("error").toString());
                }
                continue;
            }
            String test = source.get("class").asText() + "#" + event.path("name").asText();
            if (kind.equals("skipped")) {
                results.put(test, "SKIPPED: " + event.path("reason").asText());
            } else if (kind.equals("finished")) {
                String status = event.path("status").asText();
                results.put(test, status.equals("SUCCESSFUL") ? status : status + ": "
                        + event.path("error").path("class").asText() + ": "
                        + event.path("error").path("message").asText());
            }
        }
        return results;
    }

    private static String tail(String text) {
        List<String> lines = text.lines().toList();
        return String.join("\n", lines.subList(Math.max(0, lines.size() - 80), lines.size()));
    }
}
