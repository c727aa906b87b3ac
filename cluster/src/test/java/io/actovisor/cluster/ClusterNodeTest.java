package io.actovisor.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.typesafe.config.ConfigFactory;
import io.actovisor.vmm.cli.ApiClient;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * One node in this JVM (VM trees without vCPUs, so no KVM is needed): admission, pinned versus balloonable,
 * refusal, the controller's targets and their release, deletion, and bad input, all through the REST API.
 */
class ClusterNodeTest {
    private static final long MIB = 1 << 20;
    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    static Path dir;
    private static ClusterNode node;
    private static ApiClient api;

    @BeforeAll
    static void start() throws Exception {
        int port = FreePort.next();
        node = ClusterNode.start(ClusterNode.config(ConfigFactory.parseString("""
                pekko.remote.artery.canonical.port = %d
                pekko.cluster.seed-nodes = ["pekko://actovisor@127.0.0.1:%d"]
                actovisor.cluster {
                  data-dir = "%s"
                  guests = none
                  node.capacity = 64 MiB
                  node.report-interval = 300ms
                  controller { threshold = 0.5, balloon-floor = 0.5, interval = 300ms }
                  placement.balloonable-overcommit = 1.5
                }
                """.formatted(port, port, dir.resolve("node")))));
        api = new ApiClient("http://127.0.0.1:" + node.api().getPort(), Optional.of(node.token()));
        await("the node reports itself", () -> get("/cluster/nodes"), n -> n.size() == 1
                && n.get(0).get("member_status").asText().equals("Up"));
    }

    @AfterAll
    static void stop() throws Exception {
        if (node != null) {
            node.system().terminate();
            node.system().getWhenTerminated().toCompletableFuture().get(30, TimeUnit.SECONDS);
        }
    }

    static String vm(String name, int mib, boolean pinned) {
        return vm(name, mib, pinned
                ? "vfio.containers = [ { name = pt, backend = model, groups = [ { id = g0 } ] } ]" : "");
    }

    static String vm(String name, int mib, String vfio) {
        return """
                actovisor.vm {
                  name = %s
                  memory = [
                    { name = ram, base = 0, size = %d MiB }
                    { name = balloon-mmio, kind = mmio, base = "0xd0001000", size = 4 KiB, device = balloon }
                  ]
                  balloon.enabled = true
                  api.enabled = false
                  %s
                }
                """.formatted(name, mib, vfio);
    }

    @Test
    void admissionControllerAndDeletion() throws Exception {
        assertEquals(201, api.send("POST", "/cluster/vms", vm("b1", 16, false)).status());
        ApiClient.Reply pinned = api.send("POST", "/cluster/vms", vm("p1", 16, true));
        assertEquals(201, pinned.status(), pinned.body());
        assertEquals(16 * MIB, JSON.readTree(pinned.body()).get("pinnedBytes").asLong());
        ApiClient.Reply duplicate = api.send("POST", "/cluster/vms", vm("b1", 16, false));
        assertEquals(409, duplicate.status(), duplicate.body());

        // 32 MiB committed = the threshold: nothing to do. A third VM pushes the node 16 MiB over it.
        assertEquals(201, api.send("POST", "/cluster/vms", vm("b2", 16, false)).status());
        JsonNode nodes = await("both balloonable VMs get targets", () -> get("/cluster/nodes"),
                n -> target(n, "b1") == 8 * MIB && target(n, "b2") == 8 * MIB);
        assertEquals(0, target(nodes, "p1"), "the pinned VM never gets a target");
        assertEquals(16 * MIB, nodes.get(0).get("pinned_bytes").asLong());
        assertEquals(32 * MIB, nodes.get(0).get("balloonable_bytes").asLong());
        assertEquals(0, nodes.get(0).get("coordinated_reclaimable_bytes").asLong());
        JsonNode events = get("/cluster/events");
        assertTrue(has(events, "skip-pinned", "p1"), events.toString());
        assertTrue(has(events, "inflate", "b1") && has(events, "inflate", "b2"), events.toString());

        // A pinned VM needs 32 MiB within the capacity; 64 - 48 = 16 MiB are left.
        ApiClient.Reply refused = api.send("POST", "/cluster/vms", vm("p2", 32, true));
        assertEquals(507, refused.status(), refused.body());
        assertTrue(refused.body().contains("largest free amount is 16 MiB"), refused.body());
        assertEquals(404, api.send("GET", "/cluster/vms/p2", null).status());

        // Pressure falls: the controller takes its targets back.
        assertEquals(200, api.send("DELETE", "/cluster/vms/b2", null).status());
        await("targets taken back", () -> get("/cluster/nodes"), n -> target(n, "b1") == 0 && !hasVm(n, "b2"));
        assertTrue(has(get("/cluster/events"), "deflate", "b1"));
        await("b1 and p1 are the VM actors alive here", () -> get("/cluster/local"),
                l -> ids(l.get("live")).equals(List.of("b1", "p1")));
        assertEquals(200, api.send("DELETE", "/cluster/vms/b1", null).status());
        assertEquals(200, api.send("DELETE", "/cluster/vms/p1", null).status());
        await("no VM actor alive here", () -> get("/cluster/local"), l -> l.get("live").size() == 0);
        assertEquals(0, get("/cluster/vms").size());
    }

    /**
     * A coordinated container's group registers as coordinated with the VM's discard manager; without a guest driver
     * that negotiated MUST_TELL_HOST it counts as uncoordinated, so the live reading says pinned, not reclaimable.
     */
    @Test
    void aCoordinatedGroupWithoutTheGuestContractReadsAsPinned() throws Exception {
        ApiClient.Reply created = api.send("POST", "/cluster/vms", vm("c1", 8, "vfio.containers = [ { name = pt, "
                + "backend = model, discard = coordinated, groups = [ { id = g0 } ] } ]"));
        assertEquals(201, created.status(), created.body());
        JsonNode status = JSON.readTree(created.body());
        assertEquals(8 * MIB, status.get("pinnedBytes").asLong(), created.body());
        assertEquals(0, status.get("coordinatedReclaimableBytes").asLong(), created.body());
        assertEquals(0, status.get("balloonableBytes").asLong(), created.body());
        JsonNode vms = get("/cluster/vms");
        assertTrue(vms.toString().contains("\"pinned\":true"), "admission counts a coordinated group as pinned: "
                + vms);
        assertEquals(200, api.send("DELETE", "/cluster/vms/c1", null).status());
    }

    @Test
    void anOperatorTargetIsLeftAlone() throws Exception {
        assertEquals(201, api.send("POST", "/cluster/vms", vm("op", 16, false)).status());
        ApiClient.Reply set = api.send("PATCH", "/cluster/vms/op/balloon", "{\"amount_mib\": 4}");
        assertEquals(200, set.status(), set.body());
        JsonNode vm = get("/cluster/vms/op");
        assertEquals(4 * MIB, vm.get("targetBytes").asLong());
        assertEquals("api", vm.get("targetSource").asText());
        assertEquals(400, api.send("PATCH", "/cluster/vms/op/balloon", "{\"size\": 1}").status());
        assertEquals(404, api.send("PATCH", "/cluster/vms/none/balloon", "{\"amount_mib\": 1}").status());
        assertEquals(200, api.send("DELETE", "/cluster/vms/op", null).status());
    }

    @Test
    void anInvalidDefinitionIsRefusedWithEveryError() throws Exception {
        ApiClient.Reply reply = api.send("POST", "/cluster/vms", "{\"name\": \"Bad Name\", \"vcpus\": 0}");
        assertEquals(400, reply.status(), reply.body());
        JsonNode body = JSON.readTree(reply.body());
        assertEquals(2, body.get("errors").size(), reply.body());
        assertTrue(body.get("errors").get(0).asText().contains("actovisor.vm.name"), reply.body());
        assertEquals(400, api.send("POST", "/cluster/vms", "{ not hocon").status());
        assertEquals(0, get("/cluster/vms").size(), "nothing was admitted");
    }

    @Test
    void theCliTalksToTheApi() throws Exception {
        String url = "http://127.0.0.1:" + node.api().getPort();
        Path file = dir.resolve("cli-vm.conf");
        java.nio.file.Files.writeString(file, vm("cli", 8, false));
        String[] auth = {"--api", url, "--token-file", node.settings().tokenFile().toString()};
        Cli create = cli(concat(new String[] {"create", file.toString()}, auth));
        assertEquals(0, create.status(), create.err());
        assertTrue(create.out().contains("\"id\" : \"cli\""), create.out());
        Cli vms = cli(concat(new String[] {"vms"}, auth));
        assertEquals(0, vms.status(), vms.err());
        assertTrue(vms.out().contains("\"cli\""), vms.out());
        Cli status = cli(concat(new String[] {"status"}, auth));
        assertTrue(status.out().contains("capacity_bytes"), status.out());
        assertEquals(0, cli(concat(new String[] {"delete", "cli"}, auth)).status());
        Cli again = cli(concat(new String[] {"delete", "cli"}, auth));
        assertEquals(1, again.status());
        assertTrue(again.err().contains("no VM cli"), again.err());
        Cli noApi = cli(new String[] {"vms"});
        assertEquals(1, noApi.status());
        assertTrue(noApi.err().contains("--api URL is required"), noApi.err());
        Cli noFile = cli(new String[] {"node", dir.resolve("missing.conf").toString()});
        assertEquals(1, noFile.status());
        assertTrue(noFile.err().contains("no such file"), noFile.err());
    }

    record Cli(int status, String out, String err) {
    }

    static Cli cli(String[] args) {
        java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();
        java.io.ByteArrayOutputStream err = new java.io.ByteArrayOutputStream();
        int status = ClusterMain.run(args, new java.io.PrintStream(out, true), new java.io.PrintStream(err, true));
        return new Cli(status, out.toString(), err.toString());
    }

    static String[] concat(String[] a, String[] b) {
        String[] out = java.util.Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }

    @Test
    void aWrongTokenIs401() throws Exception {
        ApiClient wrong = new ApiClient("http://127.0.0.1:" + node.api().getPort(), Optional.of("wrong"));
        assertEquals(401, wrong.send("GET", "/cluster/nodes", null).status());
        assertEquals(401, new ApiClient("http://127.0.0.1:" + node.api().getPort(), Optional.empty())
                .send("GET", "/cluster/vms", null).status());
    }

    static long target(JsonNode nodes, String id) {
        for (JsonNode vm : nodes.get(0).get("vms")) {
            if (vm.get("id").asText().equals(id)) {
                return vm.get("targetBytes").asLong();
            }
        }
        return -1;
    }

    static boolean hasVm(JsonNode nodes, String id) {
        return target(nodes, id) >= 0;
    }

    static boolean has(JsonNode events, String kind, String vm) {
        for (JsonNode e : events) {
            if (e.get("kind").asText().equals(kind) && vm.equals(e.get("vm").asText())) {
                return true;
            }
        }
        return false;
    }

    static List<String> ids(JsonNode array) {
        List<String> out = new ArrayList<>();
        array.forEach(n -> out.add(n.asText()));
        out.sort(String::compareTo);
        return out;
    }

    static JsonNode get(String path) throws Exception {
        ApiClient.Reply reply = api.send("GET", path, null);
        assertEquals(200, reply.status(), path + ": " + reply.body());
        return JSON.readTree(reply.body());
    }

    interface Read {
        JsonNode read() throws Exception;
    }

    static JsonNode await(String what, Read read, Predicate<JsonNode> done) throws Exception {
        long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
        JsonNode last = null;
        while (System.nanoTime() < deadline) {
            last = read.read();
            if (done.test(last)) {
                return last;
            }
            Thread.sleep(200);
        }
        throw new AssertionError("timed out waiting until " + what + "; last: " + last);
    }
}
