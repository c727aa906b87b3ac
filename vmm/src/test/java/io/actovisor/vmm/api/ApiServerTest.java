package io.actovisor.vmm.api;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.vmm.cli.ApiClient;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.http.javadsl.ServerBinding;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The HTTP layer against a recording {@link VmManagement}: routing, strict body validation (400 naming the field),
 * status codes, and that refused requests never reach the VM.
 */
class ApiServerTest {
    private static final ActorTestKit KIT = ActorTestKit.create();
    private static final RecordingVm VM = new RecordingVm();
    private static ServerBinding binding;
    private static ApiClient client;

    /** Records the calls that reach the VM; answers like a VM with 64 MiB of RAM and one group "7". */
    static final class RecordingVm implements VmManagement {
        final List<String> calls = new ArrayList<>();
        long target;
        boolean attached;

        private static <T> CompletionStage<T> done(T value) {
            return CompletableFuture.completedFuture(value);
        }

        @Override
        public CompletionStage<Map<String, Object>> vm() {
            calls.add("vm");
            return done(Map.of("name", "test", "state", "Running"));
        }

        @Override
        public CompletionStage<Void> action(Action action) {
            calls.add("action " + action);
            return done(null);
        }

        @Override
        public CompletionStage<Map<String, Object>> balloon() {
            calls.add("balloon");
            return done(Map.of("target_mib", target));
        }

        @Override
        public CompletionStage<Map<String, Object>> setBalloonTarget(long amountMib) {
            calls.add("target " + amountMib);
            if (amountMib > 64) {
                return CompletableFuture.failedFuture(ApiException.badRequest(
                        "field 'amount_mib' value " + amountMib + " exceeds guest memory (64 MiB)"));
            }
            target = amountMib;
            return done(Map.of("target_mib", amountMib));
        }

        @Override
        public CompletionStage<Map<String, Object>> balloonStatistics() {
            return done(Map.of("free_memory", 1));
        }

        @Override
        public CompletionStage<Map<String, Object>> vfio() {
            return done(Map.of("containers", List.of()));
        }

        @Override
        public CompletionStage<Map<String, Object>> attachGroup(String groupId) {
            calls.add("attach " + groupId);
            if (!groupId.equals("7")) {
                return CompletableFuture.failedFuture(ApiException.notFound("no VFIO group '" + groupId + "'"));
            }
            if (attached) {
                return CompletableFuture.failedFuture(ApiException.conflict("group 7 is already attached"));
            }
            attached = true;
            return done(Map.of("group", groupId, "attached", true));
        }

        @Override
        public CompletionStage<Map<String, Object>> detachGroup(String groupId) {
            attached = false;
            return done(Map.of("group", groupId, "attached", false));
        }

        @Override
        public CompletionStage<List<Metric>> metrics() {
            Map<String, String> labels = new LinkedHashMap<>();
            labels.put("container", "c\"0");
            return done(List.of(
                    new Metric("actovisor_balloon_target_bytes", "gauge", "Balloon target.", Map.of(), target << 20),
                    new Metric("actovisor_iommu_pinned_bytes", "gauge", "Pinned bytes.", labels, 4096)));
        }
    }

    @BeforeAll
    static void bind() throws Exception {
        binding = ApiServer.bind(KIT.system(), VM, "127.0.0.1", 0, false, Optional.empty())
                .toCompletableFuture().get(10, TimeUnit.SECONDS);
        client = new ApiClient("http://127.0.0.1:" + binding.localAddress().getPort(), Optional.empty());
    }

    @AfterAll
    static void unbind() throws Exception {
        binding.unbind().toCompletableFuture().get(10, TimeUnit.SECONDS);
        KIT.shutdownTestKit();
    }

    @BeforeEach
    void reset() {
        VM.calls.clear();
    }

    @Test
    void balloon_target_round_trip() throws Exception {
        assertEquals(200, client.send("PATCH", "/balloon", "{\"amount_mib\": 16}").status());
        ApiClient.Reply reply = client.send("GET", "/balloon", null);
        assertEquals(200, reply.status());
        assertTrue(reply.body().contains("\"target_mib\" : 16"), reply.body());
    }

    @ParameterizedTest(name = "{0}")
    @CsvSource(delimiter = '|', value = {
        "malformed JSON      | {\"amount_mib\": | malformed JSON body",
        "not an object       | [1,2]           | the body must be a JSON object",
        "unknown field       | {\"amount\": 1} | unknown field 'amount'",
        "negative            | {\"amount_mib\": -1} | field 'amount_mib' must not be negative, was -1",
        "huge                | {\"amount_mib\": 123456789012345678901234567890} | field 'amount_mib' value 123456789012345678901234567890 is too large",
        "non-numeric         | {\"amount_mib\": \"ten\"} | field 'amount_mib' must be a whole number of MiB, was \"ten\"",
        "fractional          | {\"amount_mib\": 1.5} | field 'amount_mib' must be a whole number of MiB, was 1.5",
        "missing             | {}              | missing field 'amount_mib'",
    })
    void bad_balloon_bodies_get_400_naming_the_field_and_never_reach_the_vm(String what, String body, String message)
            throws Exception {
        ApiClient.Reply reply = client.send("PATCH", "/balloon", body);
        assertEquals(400, reply.status(), reply.body());
        assertTrue(reply.body().contains("\"fault_message\""), reply.body());
        assertTrue(reply.body().contains(message.replace("\"", "\\\"")), reply.body());
        assertEquals(List.of(), VM.calls);
    }

    @Test
    void a_target_beyond_guest_memory_is_refused_by_the_vm_with_400() throws Exception {
        ApiClient.Reply reply = client.send("PATCH", "/balloon", "{\"amount_mib\": 65}");
        assertEquals(400, reply.status());
        assertTrue(reply.body().contains("exceeds guest memory"), reply.body());
    }

    @Test
    void actions_are_validated() throws Exception {
        assertEquals(204, client.send("PUT", "/actions", "{\"action_type\": \"Pause\"}").status());
        assertEquals(List.of("action Pause"), VM.calls);
        ApiClient.Reply bad = client.send("PUT", "/actions", "{\"action_type\": \"Explode\"}");
        assertEquals(400, bad.status());
        assertTrue(bad.body().contains("field 'action_type' has invalid value \\\"Explode\\\""), bad.body());
    }

    @Test
    void groups_answer_404_for_unknown_and_409_for_conflicts() throws Exception {
        assertEquals(404, client.send("PUT", "/vfio/groups/99", null).status());
        assertEquals(200, client.send("PUT", "/vfio/groups/7", null).status());
        assertEquals(409, client.send("PUT", "/vfio/groups/7", null).status());
        assertEquals(200, client.send("DELETE", "/vfio/groups/7", null).status());
    }

    @Test
    void unknown_paths_and_methods() throws Exception {
        ApiClient.Reply missing = client.send("GET", "/nothing", null);
        assertEquals(404, missing.status());
        assertTrue(missing.body().contains("no such resource: /nothing"), missing.body());
        assertEquals(405, client.send("DELETE", "/vm", null).status());
    }

    @Test
    void metrics_are_prometheus_text() throws Exception {
        ApiClient.Reply reply = client.send("GET", "/metrics", null);
        assertEquals(200, reply.status());
        assertTrue(reply.body().contains("# TYPE actovisor_balloon_target_bytes gauge\n"), reply.body());
        assertTrue(reply.body().contains("actovisor_iommu_pinned_bytes{container=\"c\\\"0\"} 4096\n"), reply.body());
    }

    @Test
    void a_remote_bind_needs_allow_remote_and_a_token() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> ApiServer.checkBind("0.0.0.0", false, Optional.empty()));
        assertTrue(e.getMessage().startsWith("api.host = '0.0.0.0' is not a loopback address"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> ApiServer.checkBind("0.0.0.0", true, Optional.empty()));
        ApiServer.checkBind("0.0.0.0", true, Optional.of("secret"));
        ApiServer.checkBind("127.0.0.1", false, Optional.empty());
    }

    @Test
    void a_token_is_enforced_when_configured() throws Exception {
        ServerBinding secured = ApiServer.bind(KIT.system(), VM, "127.0.0.1", 0, false, Optional.of("s3cret"))
                .toCompletableFuture().get(10, TimeUnit.SECONDS);
        try {
            String url = "http://127.0.0.1:" + secured.localAddress().getPort();
            assertEquals(401, new ApiClient(url, Optional.empty()).send("GET", "/vm", null).status());
            assertEquals(401, new ApiClient(url, Optional.of("wrong")).send("GET", "/vm", null).status());
            assertEquals(200, new ApiClient(url, Optional.of("s3cret")).send("GET", "/vm", null).status());
        } finally {
            secured.unbind().toCompletableFuture().get(10, TimeUnit.SECONDS);
        }
    }
}
