package io.actovisor.it.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.actovisor.kernel.kvm.Kvm;
import io.actovisor.memory.testing.TestTimeouts;
import io.actovisor.vmm.cli.ApiClient;
import java.io.IOException;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Three cluster nodes as separate JVMs on loopback ({@code io.actovisor.cluster.ClusterMain node FILE}, what
 * {@code ./actovisor cluster node} runs), each with its own data directory in a temporary folder (deleted after the
 * test, so no remembered VM comes back in the next run). Twelve 8 MiB VMs, three of them pinned by a VFIO group
 * (the {@code model} IOMMU backend: its attached group disables discards as a real one does):
 * placement, the memory controller on the one node whose threshold the VMs exceed, {@code kill -9} of a node and
 * its VMs running again on the survivors, never in two places (the live VM actors of every JVM are counted at
 * every step), and a VM that fits nowhere refused. Guests ({@code guest.kind = auto}) are the firmware on KVM where
 * /dev/kvm works, else the scripted guest; the ballooned guests' resident memory, read by their own VM actors,
 * drops.
 */
class ClusterProcessesTest {
    private static final Logger LOG = LoggerFactory.getLogger(ClusterProcessesTest.class);
    private static final long MIB = 1 << 20;
    // Generous: the suite runs on a 2-core machine shared with other builds (load averages of 20 to 50 seen).
    private static final Duration TIMEOUT = TestTimeouts.scaled(Duration.ofSeconds(150));
    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    Path dir;
    private final List<Node> nodes = new ArrayList<>();

    /** One node process. */
    /** A node JVM of this test. */
    static final class Node extends NodeProcess {
        Node(int index, Path conf, Path dataDir) throws IOException {
            super(index, List.of(), conf, dataDir);
        }
    }

    @AfterEach
    void stopAll() throws Exception {
        for (Node n : nodes) {
            n.process.destroyForcibly();
            n.process.waitFor(30, TimeUnit.SECONDS);
        }
    }

    private static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0)) {
            return s.getLocalPort();
        }
    }

    private Node launch(int index, int[] ports, String guests, double threshold) throws Exception {
        StringBuilder seeds = new StringBuilder();
        for (int p : ports) {
            seeds.append(seeds.length() == 0 ? "" : ", ").append("\"pekko://actovisor@127.0.0.1:").append(p)
                    .append('"');
        }
        Path file = dir.resolve("node" + index + ".conf");
        Files.writeString(file, """
                pekko.remote.artery.canonical.port = %d
                pekko.cluster.seed-nodes = [%s]
                actovisor.cluster {
                  data-dir = "%s"
                  guests = %s
                  node.capacity = 64 MiB
                  controller { threshold = %s, balloon-floor = 0.5, interval = 1s }
                  placement.balloonable-overcommit = 1.5
                  # Majority writes on a machine at a load average of 20+: 3 x 9 s admission < the client's 30 s.
                  ask-timeout = 9s
                }
                pekko.http.server.request-timeout = 28s
                """.formatted(ports[index], seeds, dir.resolve("data-" + index), guests, threshold));
        Node node = new Node(index, file, dir.resolve("data-" + index));
        nodes.add(node);
        return node;
    }

    private void awaitStarted(Node node) throws Exception {
        node.awaitStarted(TIMEOUT);
    }

    private String log(Node node) {
        return node.log();
    }

    /** Node 2's last report while the test waits for its balloons (shown when the wait times out). */
    private static volatile JsonNode lastPressureReport;

    static String vm(String name, boolean pinned) {
        return """
                actovisor.vm {
                  name = %s
                  memory = [
                    { name = ram, base = 0, size = 8 MiB }
                    { name = balloon-mmio, kind = mmio, base = "0xd0001000", size = 4 KiB, device = balloon }
                  ]
                  # a 6 MiB work area that the guest touches: the guest balloons its untouched free RAM first, so
                  # the balloon must reach into touched pages for the VM's resident memory to drop
                  guest { kind = auto, program = workload, workload-mib = 6 }
                  devices.serial = false
                  # no free page reporting: the guest would give its free RAM back before any pressure, and
                  # this test measures what the balloon gives back
                  balloon { enabled = true, stats-polling-interval = 5s, free-page-reporting = false }
                  api.enabled = false
                  %s
                }
                """.formatted(name, pinned
                ? "vfio.containers = [ { name = pt, backend = model, groups = [ { id = g0 } ] } ]" : "");
    }

    /**
     * The VM actors alive in each of {@code alive}, checked for a VM in two places at once; returns VM id -> node
     * index.
     */
    private Map<String, Integer> census(List<Node> alive) throws Exception {
        Map<String, Integer> where = new TreeMap<>();
        for (Node n : alive) {
            for (String id : n.live()) {
                Integer before = where.put(id, n.index);
                if (before != null) {
                    fail("VM " + id + " runs on node " + before + " and on node " + n.index);
                }
            }
        }
        return where;
    }

    @Test
    void placementControllerFailoverAndRefusal() throws Exception {
        // guest.kind = auto: the firmware guest where KVM works, else the scripted guest; either gives pages back.
        String guests = "definition";
        LOG.info("cluster test guests: {}", Kvm.unavailabilityCause().map(why -> "scripted (" + why + ")")
                .orElse("firmware on KVM"));
        // Sorted, so node 2 has the highest address: placement breaks ties towards the lower address, so the
        // eleventh VM leaves node 2 with the fewest and the twelfth goes there.
        int[] ports = {freePort(), freePort(), freePort()};
        java.util.Arrays.sort(ports);
        // Node 2's threshold (0.4 x 64 MiB = 25.6 MiB) is below the 32 MiB its four VMs commit; the others' is not.
        for (int i = 0; i < 3; i++) {
            launch(i, ports, guests, i == 2 ? 0.4 : 0.9);
        }
        long phase0 = System.nanoTime();
        for (Node n : nodes) {
            awaitStarted(n);
        }
        Node first = nodes.get(0);
        await("three nodes Up and reporting", () -> {
            JsonNode reports = first.get("/cluster/nodes");
            int up = 0;
            for (JsonNode r : reports) {
                up += r.get("member_status").asText().equals("Up") ? 1 : 0;
            }
            return up == 3;
        });
        report("three node JVMs started and Up", phase0);

        // Twelve VMs: first the three pinned by a VFIO group (vm-p*), one after another, so that each node gets
        // one; then eight balloonable ones at once through the three nodes (admission is one at a time in the
        // controller, so placement still sees every VM admitted before): node 2 has three VMs (24 MiB), below its
        // threshold. Its VMs' resident memory is read; then the twelfth VM takes node 2 over its threshold.
        long phase = System.nanoTime();
        Map<String, Boolean> pinned = new TreeMap<>();
        for (int i = 0; i < 3; i++) {
            String id = "vm-p" + i;
            pinned.put(id, true);
            create(nodes.get(i), id, vm(id, true));
            census(nodes);
        }
        List<Future<Void>> created = new ArrayList<>();
        ExecutorService clients = Executors.newFixedThreadPool(6);
        try {
            for (int i = 0; i < 8; i++) {
                String id = "vm-b" + i;
                pinned.put(id, false);
                Node via = nodes.get(i % 3);
                created.add(clients.submit(() -> {
                    create(via, id, vm(id, false));
                    return null;
                }));
            }
            for (Future<Void> f : created) {
                f.get(TIMEOUT.toSeconds(), TimeUnit.SECONDS);
                census(nodes);
            }
        } finally {
            clients.shutdownNow();
        }
        phase = report("eleven VMs created", phase);
        Map<String, Integer> eleven = await("eleven VMs running", () -> census(nodes).size() == 11 ? census(nodes)
                : null);
        List<String> onNode2 = eleven.entrySet().stream().filter(e -> e.getValue() == 2).map(Map.Entry::getKey)
                .toList();
        assertEquals(3, onNode2.size(), "node 2 (the highest address) has the fewest VMs: " + eleven);
        // Each guest touches its 6 MiB work area in its first rounds: wait until every one has, and read it.
        Map<String, Long> residentBefore = await("node 2's guests have touched their work areas", () -> {
            Map<String, Long> out = new TreeMap<>();
            for (String id : onNode2) {
                JsonNode vm = first.get("/cluster/vms/" + id);
                assertEquals(0, vm.get("targetBytes").asLong(), "no pressure on node 2 yet: " + vm);
                if (vm.get("residentBytes").asLong() < 6 * MIB) {
                    return null;
                }
                out.put(id, vm.get("residentBytes").asLong());
            }
            return out;
        });
        LOG.info("node 2's VMs' resident guest memory before pressure: {}", residentBefore);
        pinned.put("vm-b8", false);
        create(nodes.get(0), "vm-b8", vm("vm-b8", false));
        phase = report("twelve VMs created", phase);
        Map<String, Integer> where = await("twelve VMs running", () -> census(nodes).size() == 12 ? census(nodes)
                : null);
        assertEquals(2, where.get("vm-b8"), "the twelfth VM goes to the node with the most room: " + where);
        Map<Integer, Integer> perNode = new HashMap<>();
        where.values().forEach(n -> perNode.merge(n, 1, Integer::sum));
        assertEquals(Map.of(0, 4, 1, 4, 2, 4), perNode, "placement spreads the VMs by free room: " + where);
        Set<Integer> pinnedNodes = new TreeSet<>();
        pinned.forEach((id, p) -> {
            if (p) {
                pinnedNodes.add(where.get(id));
            }
        });
        assertEquals(Set.of(0, 1, 2), pinnedNodes, "one pinned VM per node: " + where);
        JsonNode vms = first.get("/cluster/vms");
        assertEquals(12, vms.size());
        for (JsonNode v : vms) {
            assertEquals(8 * MIB, v.get("ram_bytes").asLong());
            assertEquals(pinned.get(v.get("id").asText()), v.get("pinned").asBoolean(), v.toString());
        }

        // Node 2 is over its threshold: only its balloonable VMs inflate, and their guests give pages back.
        phase = report("placement checked", phase);
        Node pressured = nodes.get(2);
        // Inflated: each targeted VM's guest gave pages back, and its resident memory (read by its own VM actor)
        // fell below what it was before the pressure.
        JsonNode report = awaitOr("node 2's balloonable VMs inflate and their resident memory drops",
                () -> "node 2's last report: " + lastPressureReport + "; resident before: " + residentBefore, () -> {
            JsonNode r = reportOf(first, pressured.address);
            lastPressureReport = r;
            int inflated = 0;
            for (JsonNode vm : r.get("vms")) {
                if (vm.get("targetBytes").asLong() > 0) {
                    Long before = residentBefore.get(vm.get("id").asText());
                    if (vm.get("actualBytes").asLong() == 0
                            || before != null && vm.get("residentBytes").asLong() >= before) {
                        return null;
                    }
                    inflated++;
                }
            }
            return inflated > 0 ? r : null;
        });
        int dropped = 0;
        for (JsonNode vm : report.get("vms")) {
            String id = vm.get("id").asText();
            long resident = vm.get("residentBytes").asLong();
            if (pinned.get(id)) {
                assertEquals(0, vm.get("targetBytes").asLong(), "a pinned VM gets no target: " + vm);
                assertEquals(0, vm.get("actualBytes").asLong(), "a pinned VM gives nothing back: " + vm);
                assertEquals(8 * MIB, vm.get("pinnedBytes").asLong(), vm.toString());
                assertTrue(resident >= residentBefore.get(id), "a pinned VM's resident memory does not drop: "
                        + residentBefore.get(id) + " before, now " + vm);
            } else if (vm.get("targetBytes").asLong() > 0) {
                if (residentBefore.containsKey(id)) {
                    dropped++;
                    System.out.printf("cluster test: %s resident guest memory %d KiB before pressure, %d KiB after "
                            + "its guest gave %d KiB back%n", id, residentBefore.get(id) >> 10, resident >> 10,
                            vm.get("actualBytes").asLong() >> 10);
                }
                // The controller keeps each VM at or above its floor (half its RAM).
                assertTrue(vm.get("targetBytes").asLong() <= 4 * MIB, vm.toString());
            }
        }
        assertTrue(dropped > 0, "a VM measured before the pressure was ballooned: " + report);
        assertTrue(report.get("resident_bytes").asLong() > 0, report.toString());
        for (Node n : List.of(nodes.get(0), nodes.get(1))) {
            for (JsonNode vm : reportOf(first, n.address).get("vms")) {
                assertEquals(0, vm.get("targetBytes").asLong(), "no pressure on node " + n.index + ": " + vm);
            }
        }
        JsonNode events = first.get("/cluster/events");
        assertTrue(events.toString().contains("skip-pinned"), events.toString());
        assertTrue(events.toString().contains("inflate"), events.toString());
        census(nodes);
        phase = report("controller inflated node 2's balloonable VMs", phase);

        // kill -9 node 1 (not the oldest, which holds the singleton and the shard coordinator).
        Node victim = nodes.get(1);
        Set<String> victims = victim.live();
        long killed = System.nanoTime();
        victim.process.destroyForcibly();
        List<Node> survivors = List.of(nodes.get(0), nodes.get(2));
        long[] downAt = {0};
        Map<String, Integer> after = await("the killed node's VMs run again on the survivors", () -> {
            if (downAt[0] == 0 && !memberStatus(first, victim.address).equals("Up")) {
                downAt[0] = System.nanoTime();
            }
            Map<String, Integer> now = census(survivors);
            return now.keySet().equals(pinned.keySet()) ? now : null;
        });
        double seconds = (System.nanoTime() - killed) / 1e9;
        LOG.info("cluster failover: {} VMs of the killed node ran again on the survivors {} s after kill -9: {}",
                victims.size(), String.format("%.1f", seconds), after);
        System.out.printf("cluster failover: %d VMs running again %.1f s after kill -9 (node seen %s %.1f s after "
                + "the kill)%n", victims.size(), seconds, downAt[0] == 0 ? "(not seen)" : "Down/Removed",
                downAt[0] == 0 ? 0.0 : (downAt[0] - killed) / 1e9);
        phase = System.nanoTime();
        JsonNode definitions = first.get("/cluster/vms");
        assertEquals(12, definitions.size());
        for (JsonNode v : definitions) {
            assertTrue(!v.get("node").asText().equals(victim.address), "definition moved: " + v);
            assertEquals(8 * MIB, v.get("ram_bytes").asLong());
        }

        // A pinned VM needs its whole RAM free on one node; no survivor has 48 MiB.
        ApiClient.Reply refused = first.api.send("POST", "/cluster/vms", vm("vm-big", true)
                .replace("size = 8 MiB", "size = 48 MiB"));
        assertEquals(507, refused.status(), refused.body());
        assertTrue(refused.body().contains("largest free amount"), refused.body());
        assertEquals(12, census(survivors).size());
        phase = report("refusal checked", phase);

        // SIGTERM node 2: it leaves gracefully, hands its VMs over (each stops there before it starts on node 0)
        // and exits 0. Node 0 is now over its capacity; the allocation strategy says so and starts them anyway.
        Node leaving = nodes.get(2);
        leaving.process.destroy();
        Map<String, Integer> handedOver = awaitOr("node 2's VMs run on node 0", () -> "node 2 " + (leaving.process
                .isAlive() ? "still runs" : "exited " + leaving.process.exitValue()) + "; node 0 runs "
                + census(List.of(first)) + "\nnode 2's log:\n" + log(leaving) + "\nnode 0's log:\n" + log(first),
                () -> {
            Map<String, Integer> now = census(List.of(first));
            Set<String> stillThere = Set.of();
            try {
                stillThere = leaving.live();
            } catch (IOException | AssertionError stopping) {
                // The node is shutting down or has stopped; its VMs are counted once it answers or not at all.
            }
            for (String id : stillThere) {
                assertTrue(!now.containsKey(id), "VM " + id + " runs on node 2 and on node 0");
            }
            return !leaving.process.isAlive() && now.keySet().equals(pinned.keySet()) ? now : null;
        });
        assertEquals(0, leaving.process.exitValue(), "a node that leaves gracefully exits 0: " + leaving.output);
        assertEquals(Set.of(0), Set.copyOf(handedOver.values()));
        report("graceful leave and hand-off", phase);
    }

    /**
     * POST a VM definition through {@code via}: 201, or, on a machine so loaded that the node's HTTP server answered
     * 503 before admission and start finished (its request timeout), the VM running soon after (GET answers 200).
     */
    static void create(Node via, String id, String definition) throws Exception {
        ApiClient.Reply reply;
        try {
            reply = via.api.send("POST", "/cluster/vms", definition);
        } catch (java.net.http.HttpTimeoutException slow) {
            // Even the server's 503 did not come within the client's 30 s (load averages above 60 seen).
            reply = new ApiClient.Reply(503, "timely response: the client timed out");
        }
        if (reply.status() == 503 && reply.body().contains("timely response")) {
            LOG.warn("POST of {} through node {} timed out in the HTTP server; waiting for the VM", id, via.index);
            await(id + " running after a timed-out POST", () -> {
                try {
                    return via.api.send("GET", "/cluster/vms/" + id, null).status() == 200;
                } catch (IOException slow) {
                    return false;
                }
            });
            return;
        }
        assertEquals(201, reply.status(), id + ": " + reply.body());
    }

    private static long report(String what, long since) {
        System.out.printf("cluster test: %s in %.1f s%n", what, (System.nanoTime() - since) / 1e9);
        return System.nanoTime();
    }

    private static String memberStatus(Node from, String address) throws Exception {
        for (JsonNode r : from.get("/cluster/nodes")) {
            if (r.get("node").asText().equals(address)) {
                return r.get("member_status").asText();
            }
        }
        return "Removed";
    }

    private static JsonNode reportOf(Node from, String address) throws Exception {
        for (JsonNode r : from.get("/cluster/nodes")) {
            if (r.get("node").asText().equals(address)) {
                return r;
            }
        }
        fail("no report of " + address);
        return null;
    }

    interface Probe<T> {
        /** The value once the condition holds, null (or false) until then. */
        T read() throws Exception;
    }

    /** As {@link #await}, with {@code state} read and added to the message when it times out. */
    private static <T> T awaitOr(String what, Probe<String> state, Probe<T> probe) throws Exception {
        try {
            return await(what, probe);
        } catch (AssertionError e) {
            throw new AssertionError(e.getMessage() + "; " + state.read(), e);
        }
    }

    private static <T> T await(String what, Probe<T> probe) throws Exception {
        long deadline = System.nanoTime() + TIMEOUT.toNanos();
        while (System.nanoTime() < deadline) {
            T value = probe.read();
            if (value != null && !Boolean.FALSE.equals(value)) {
                return value;
            }
            Thread.sleep(500);
        }
        throw new AssertionError("timed out after " + TIMEOUT.toSeconds() + " s waiting until " + what);
    }
}
