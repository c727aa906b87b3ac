package io.actovisor.benchmarks;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.typesafe.config.ConfigFactory;
import io.actovisor.cluster.ClusterNode;
import io.actovisor.vmm.cli.ApiClient;
import java.io.IOException;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/**
 * The cluster at scale, in this JVM: node A (capacity 4N + 100 MiB) holds N balloonable 4 MiB VMs (VM trees without
 * a guest: memory, balloon), created through its API with 8 requests in flight. It measures:
 * <ul>
 *   <li>admission and start throughput of the N sharded VMs on one node, and that all N VM actors live on A;</li>
 *   <li>the controller's reaction to pressure: a 64 MiB VM takes A's committed memory over its threshold (set
 *       between 4N MiB and 4N + 64 MiB is set between the two); the time from sending that request (and from its 201) to the controller's first {@code inflate}
 *       event (the event's own timestamp);</li>
 *   <li>a second node D (256 MiB) joining: rebalancing is off (one shard per VM, {@code VmAllocationStrategy}
 *       never moves a running VM), so nothing moves; the time from starting D to D {@code Up} and reported, and to the
 *       first {@code 201} of a 128 MiB VM without a balloon that fits only on D (refused with 507 until then), and
 *       that A still holds its VMs.</li>
 * </ul>
 * Not JMH: one run, one number each.
 * {@code java -Xmx3g --add-opens java.base/java.nio=ALL-UNNAMED --add-opens java.base/sun.nio.ch=ALL-UNNAMED
 * -cp benchmarks/target/benchmarks.jar io.actovisor.benchmarks.ClusterScaleBenchmark 1000}
 */
public final class ClusterScaleBenchmark {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final int IN_FLIGHT = 8;

    private ClusterScaleBenchmark() {
    }

    private static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0)) {
            return s.getLocalPort();
        }
    }

    private static ClusterNode node(Path dir, String name, int port, int seedPort, long capacityMib,
            double threshold) throws Exception {
        return ClusterNode.start(ClusterNode.config(ConfigFactory.parseString("""
                pekko.loglevel = WARNING
                pekko.remote.artery.canonical.port = %d
                pekko.cluster.seed-nodes = ["pekko://actovisor@127.0.0.1:%d"]
                # Two nodes in one JVM on a loaded machine: no false failure detection.
                pekko.cluster.failure-detector.acceptable-heartbeat-pause = 10s
                pekko.cluster.jmx.multi-mbeans-in-same-jvm = on
                actovisor.cluster {
                  data-dir = "%s"
                  guests = none
                  node.capacity = %d MiB
                  controller { threshold = %s, balloon-floor = 0.5, interval = 1s }
                  ask-timeout = 20s
                }
                """.formatted(port, seedPort, dir.resolve(name), capacityMib, threshold))));
    }

    static String vm(String name, int mib, boolean balloon) {
        return """
                actovisor.vm {
                  name = %s
                  memory = [
                    { name = ram, base = 0, size = %d MiB }
                    { name = balloon-mmio, kind = mmio, base = "0xd0001000", size = 4 KiB, device = balloon }
                  ]
                  balloon.enabled = %s
                  api.enabled = false
                }
                """.formatted(name, mib, balloon);
    }

    /**
     * POST a VM; a connection the server closed under load (no answer) is retried once, and a 409 then means the
     * first attempt was admitted: answered as the VM's status if it runs.
     */
    private static ApiClient.Reply create(ApiClient api, String id, String definition) throws Exception {
        try {
            return api.send("POST", "/cluster/vms", definition);
        } catch (IOException lost) {
            ApiClient.Reply again = api.send("POST", "/cluster/vms", definition);
            if (again.status() == 409) {
                ApiClient.Reply status = api.send("GET", "/cluster/vms/" + id, null);
                return status.status() == 200 ? new ApiClient.Reply(201, status.body()) : status;
            }
            return again;
        }
    }

    private static ApiClient api(ClusterNode node) {
        return new ApiClient("http://127.0.0.1:" + node.api().getPort(), Optional.of(node.token()));
    }

    private static JsonNode get(ApiClient api, String path) throws Exception {
        ApiClient.Reply reply = api.send("GET", path, null);
        if (reply.status() != 200) {
            throw new IllegalStateException(path + ": " + reply.status() + " " + reply.body());
        }
        return JSON.readTree(reply.body());
    }

    private static JsonNode report(ApiClient api, String node) throws Exception {
        for (JsonNode r : get(api, "/cluster/nodes")) {
            if (r.get("node").asText().equals(node)) {
                return r;
            }
        }
        return null;
    }

    public static void main(String[] args) throws Exception {
        int n = args.length > 0 ? Integer.parseInt(args[0]) : 1000;
        ((ch.qos.logback.classic.Logger) org.slf4j.LoggerFactory.getLogger(org.slf4j.Logger.ROOT_LOGGER_NAME))
                .setLevel(ch.qos.logback.classic.Level.WARN);
        Path dir = Files.createTempDirectory("actovisor-cluster-bench");
        List<ClusterNode> started = new ArrayList<>();
        try {
            int portA = freePort();
            long t0 = System.nanoTime();
            // A's threshold lies between its N VMs (4N MiB) and those plus the 64 MiB pressure VM.
            long capacityA = 4L * n + 100;
            ClusterNode a = node(dir, "a", portA, portA, capacityA, (4.0 * n + 32) / capacityA);
            started.add(a);
            ApiClient api = api(a);
            await(() -> {
                int up = 0;
                for (JsonNode r : get(api, "/cluster/nodes")) {
                    up += r.get("member_status").asText().equals("Up") ? 1 : 0;
                }
                return up == 1;
            }, 120);
            System.out.printf("cluster: node A Up in %.2f s%n", (System.nanoTime() - t0) / 1e9);

            long created = System.nanoTime();
            ExecutorService clients = Executors.newFixedThreadPool(IN_FLIGHT);
            List<Future<ApiClient.Reply>> replies = new ArrayList<>(n);
            for (int i = 0; i < n; i++) {
                String id = String.format("vm-%05d", i);
                replies.add(clients.submit(() -> create(api, id, vm(id, 4, true))));
            }
            int failed = 0;
            String firstFailure = "";
            for (Future<ApiClient.Reply> f : replies) {
                ApiClient.Reply r = f.get(10, TimeUnit.MINUTES);
                if (r.status() != 201) {
                    failed++;
                    firstFailure = firstFailure.isEmpty() ? r.status() + " " + r.body() : firstFailure;
                }
            }
            clients.shutdown();
            double createSeconds = (System.nanoTime() - created) / 1e9;
            int live = get(api, "/cluster/local").get("live").size();
            System.out.printf("admission: %d VMs created (%d refused or failed%s) in %.2f s: %.1f VMs/s, %d in "
                    + "flight; %d VM actors live on node A%n", n - failed, failed, failed == 0 ? ""
                    : ", first: " + firstFailure, createSeconds, (n - failed) / createSeconds, IN_FLIGHT, live);

            // Wait until A's report covers all of its VMs, then cross its threshold.
            await(() -> {
                JsonNode r = report(api, a.address());
                return r != null && r.get("vms").size() == live;
            }, 120);
            JsonNode before = report(api, a.address());
            System.out.printf("node A: committed %d MiB, threshold %d MiB%n", before.get("committed_bytes").asLong()
                    >> 20, before.get("threshold_bytes").asLong() >> 20);
            long sentMillis = System.currentTimeMillis();
            ApiClient.Reply pressure = api.send("POST", "/cluster/vms", vm("vm-pressure", 64, true));
            long answeredMillis = System.currentTimeMillis();
            if (pressure.status() != 201) {
                throw new IllegalStateException("the pressure VM was refused: " + pressure.body());
            }
            JsonNode inflate = await(() -> {
                for (JsonNode e : get(api, "/cluster/events")) {
                    if (e.get("kind").asText().equals("inflate") && e.get("atMillis").asLong() >= sentMillis) {
                        return e;
                    }
                }
                return null;
            }, 120);
            long at = inflate.get("atMillis").asLong();
            System.out.printf("controller: first balloon target %d ms after the request that crossed the threshold "
                    + "was sent, %d ms after its 201 (node report every 1 s, controller every 1 s): %s%n",
                    at - sentMillis, at - answeredMillis, inflate.get("reason").asText());

            // A second node. A 128 MiB VM without a balloon fits only on D.
            ApiClient.Reply early = api.send("POST", "/cluster/vms", vm("vm-on-d", 128, false));
            System.out.printf("before D joins, the 128 MiB VM is answered %d%n", early.status());
            long join = System.nanoTime();
            ClusterNode d = node(dir, "d", freePort(), portA, 256, 0.9);
            started.add(d);
            double apiSeconds = (System.nanoTime() - join) / 1e9;
            await(() -> {
                JsonNode r = report(api, d.address());
                return r != null && r.get("member_status").asText().equals("Up");
            }, 120);
            double upSeconds = (System.nanoTime() - join) / 1e9;
            ApiClient.Reply onD = await(() -> {
                ApiClient.Reply r = api.send("POST", "/cluster/vms", vm("vm-on-d", 128, false));
                return r.status() == 201 ? r : null;
            }, 120);
            double acceptSeconds = (System.nanoTime() - join) / 1e9;
            int liveAfter = get(api, "/cluster/local").get("live").size();
            System.out.printf("join: node D started (API bound) %.2f s, Up and reported %.2f s, first VM placed and "
                    + "running on it %.2f s after it was started (%s); node A still runs %d VM actors (no "
                    + "rebalancing)%n", apiSeconds, upSeconds, acceptSeconds, JSON.readTree(onD.body()).get("node")
                    .asText().equals(d.address()) ? "on D" : "NOT on D: " + onD.body(), liveAfter);
        } finally {
            for (int i = started.size() - 1; i >= 0; i--) {
                ClusterNode node = started.get(i);
                node.system().terminate();
                node.system().getWhenTerminated().toCompletableFuture().get(120, TimeUnit.SECONDS);
            }
            try (Stream<Path> files = Files.walk(dir)) {
                files.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
            }
        }
    }

    interface Probe<T> {
        T read() throws Exception;
    }

    private static <T> T await(Probe<T> probe, int seconds) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds);
        while (System.nanoTime() < deadline) {
            T value = probe.read();
            if (value != null && !Boolean.FALSE.equals(value)) {
                return value;
            }
            Thread.sleep(50);
        }
        throw new IllegalStateException("timed out after " + seconds + " s");
    }
}
