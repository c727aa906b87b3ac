package io.actovisor.vmm.api;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.vmm.api.model.Balloon;
import io.actovisor.vmm.api.model.Fault;
import io.actovisor.vmm.api.model.VmInfo;
import io.actovisor.vmm.cli.ApiClient;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.http.javadsl.ServerBinding;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The HTTP layer against a {@link RecordingVm}: routing, strict bodies (400 naming the field), the one rejection
 * handler's status codes and headers, and that refused requests never reach the VM.
 */
class ApiServerTest {
    private static final String TOKEN = "t0ken";
    private static final ActorTestKit KIT = ActorTestKit.create();
    private static final RecordingVm VM = new RecordingVm();
    @TempDir
    static Path dir;
    private static ServerBinding binding;
    private static ApiClient client;
    private static String base;
    private static final HttpClient HTTP = HttpClient.newHttpClient();

    @BeforeAll
    static void bind() throws Exception {
        binding = ApiServer.bind(KIT.system(), VM, "127.0.0.1", 0, false, TOKEN,
                Optional.of(dir.resolve("test.prom"))).toCompletableFuture().get(10, TimeUnit.SECONDS);
        base = "http://127.0.0.1:" + binding.localAddress().getPort();
        client = new ApiClient(base, Optional.of(TOKEN));
    }

    @AfterAll
    static void unbind() throws Exception {
        binding.unbind().toCompletableFuture().get(10, TimeUnit.SECONDS);
        KIT.shutdownTestKit();
    }

    @BeforeEach
    void reset() {
        VM.calls.clear();
        VM.timeOut = false;
        VM.attached = false;
    }

    private static HttpResponse<String> raw(String method, String path, String contentType, String body,
            Optional<String> token) throws Exception {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(base + path)).method(method,
                body == null ? HttpRequest.BodyPublishers.noBody() : HttpRequest.BodyPublishers.ofString(body));
        if (contentType != null) {
            b.header("Content-Type", contentType);
        }
        token.ifPresent(t -> b.header("Authorization", "Bearer " + t));
        return HTTP.send(b.build(), HttpResponse.BodyHandlers.ofString());
    }

    private static String faultOf(String body) throws Exception {
        return ApiServer.JSON.readValue(body, Fault.class).faultMessage();
    }

    @Test
    void balloon_target_round_trip_through_the_shared_records() throws Exception {
        assertEquals(204, client.send("PATCH", "/balloon", "{\"amount_mib\": 16}").status());
        ApiClient.Reply reply = client.send("GET", "/balloon", null);
        assertEquals(200, reply.status());
        Balloon balloon = ApiServer.JSON.readValue(reply.body(), Balloon.class);
        assertEquals(16, balloon.amountMib());
        assertTrue(reply.body().contains("\"deflate_on_oom\" : true"), reply.body());
        assertTrue(reply.body().contains("\"stats_polling_interval_s\" : 1"), reply.body());
    }

    @ParameterizedTest(name = "{0}")
    @CsvSource(delimiter = '|', value = {
        "malformed JSON      | {\"amount_mib\": | malformed JSON body",
        "not an object       | [1,2]           | the body must be a JSON object",
        "empty               | ''              | the body must be a JSON object, was empty",
        "unknown field       | {\"amount\": 1} | unknown field 'amount'",
        "negative            | {\"amount_mib\": -1} | field 'amount_mib' must not be negative, was -1",
        "huge                | {\"amount_mib\": 123456789012345678901234567890} | field 'amount_mib' value 123456789012345678901234567890 is too large",
        "non-numeric         | {\"amount_mib\": \"ten\"} | field 'amount_mib' must be a whole number of MiB, was \"ten\"",
        "fractional          | {\"amount_mib\": 1.5} | field 'amount_mib' must be a whole number of MiB, was 1.5",
        "missing             | {}              | missing field 'amount_mib'",
        "trailing junk       | {\"amount_mib\": 1} junk | malformed JSON body",
        "trailing object     | {\"amount_mib\": 1} {} | malformed JSON body",
        "duplicate key       | {\"amount_mib\": 1, \"amount_mib\": 2} | Duplicate field 'amount_mib'",
    })
    void bad_balloon_bodies_get_400_naming_the_problem_and_never_reach_the_vm(String what, String body,
            String message) throws Exception {
        ApiClient.Reply reply = client.send("PATCH", "/balloon", body);
        assertEquals(400, reply.status(), reply.body());
        assertTrue(faultOf(reply.body()).contains(message), reply.body());
        assertEquals(List.of(), VM.calls);
    }

    @Test
    void a_target_beyond_guest_memory_is_refused_by_the_vm_with_400() throws Exception {
        ApiClient.Reply reply = client.send("PATCH", "/balloon", "{\"amount_mib\": 65}");
        assertEquals(400, reply.status());
        assertTrue(faultOf(reply.body()).contains("exceeds guest memory"), reply.body());
    }

    @Test
    void a_body_needs_the_json_content_type() throws Exception {
        HttpResponse<String> plain = raw("PATCH", "/balloon", "text/plain", "{\"amount_mib\": 1}",
                Optional.of(TOKEN));
        assertEquals(415, plain.statusCode(), plain.body());
        assertTrue(faultOf(plain.body()).contains("Content-Type: application/json"), plain.body());
        assertEquals(415, raw("PATCH", "/balloon", null, "{\"amount_mib\": 1}", Optional.of(TOKEN)).statusCode());
        assertEquals(List.of(), VM.calls);
    }

    @Test
    void a_body_beyond_the_limit_is_413() throws Exception {
        String big = "{\"amount_mib\": 1, \"pad\": \"" + "x".repeat(9 << 20) + "\"}";
        // Expect: 100-continue, so the server can refuse before the client sends 9 MiB: without it the server may
        // answer and close while the client still writes, and the client loses the answer (seen under load).
        HttpResponse<String> reply = HTTP.send(HttpRequest.newBuilder(URI.create(base + "/balloon"))
                .expectContinue(true).method("PATCH", HttpRequest.BodyPublishers.ofString(big)).header("Content-Type", "application/json")
                .header("Authorization", "Bearer " + TOKEN).build(), HttpResponse.BodyHandlers.ofString());
        assertEquals(413, reply.statusCode(), reply.body().length() > 300 ? reply.body().substring(0, 300)
                : reply.body());
        assertTrue(faultOf(reply.body()).contains("at most 65536"), reply.body());
        assertEquals(List.of(), VM.calls);
    }

    @Test
    void vm_state_moves_by_patch_vm_and_the_old_actions_name_the_new_way() throws Exception {
        assertEquals(204, client.send("PATCH", "/vm", "{\"state\": \"Paused\"}").status());
        VmInfo vm = ApiServer.JSON.readValue(client.send("GET", "/vm", null).body(), VmInfo.class);
        assertEquals("Paused", vm.state());
        assertEquals(204, client.send("PATCH", "/vm", "{\"state\": \"Resumed\"}").status());
        ApiClient.Reply bad = client.send("PATCH", "/vm", "{\"state\": \"Running\"}");
        assertEquals(400, bad.status());
        assertTrue(faultOf(bad.body()).contains("field 'state' has invalid value \"Running\""), bad.body());
        ApiClient.Reply pause = client.send("PUT", "/actions", "{\"action_type\": \"Pause\"}");
        assertEquals(400, pause.status());
        assertTrue(faultOf(pause.body()).contains("PATCH /vm {\"state\": \"Paused\"}"), pause.body());
        ApiClient.Reply resume = client.send("PUT", "/actions", "{\"action_type\": \"Resume\"}");
        assertTrue(faultOf(resume.body()).contains("PATCH /vm {\"state\": \"Resumed\"}"), resume.body());
        assertEquals(List.of("state Paused", "vm", "state Resumed"), VM.calls);
    }

    @Test
    void actions() throws Exception {
        assertEquals(204, client.send("PUT", "/actions", "{\"action_type\": \"Shutdown\"}").status());
        assertEquals(400, client.send("PUT", "/actions", "{\"action_type\": \"SendCtrlAltDel\"}").status());
        ApiClient.Reply bad = client.send("PUT", "/actions", "{\"action_type\": \"Explode\"}");
        assertEquals(400, bad.status());
        assertTrue(faultOf(bad.body()).contains("field 'action_type' has invalid value \"Explode\""), bad.body());
        assertEquals(List.of("action Shutdown", "action SendCtrlAltDel"), VM.calls);
    }

    @Test
    void flush_metrics_writes_the_metrics_file() throws Exception {
        Files.deleteIfExists(dir.resolve("test.prom"));
        assertEquals(204, client.send("PUT", "/actions", "{\"action_type\": \"FlushMetrics\"}").status());
        String text = Files.readString(dir.resolve("test.prom"));
        assertTrue(text.contains("# TYPE actovisor_vm_vcpus gauge\nactovisor_vm_vcpus 2"), text);
    }

    @Test
    void what_firecracker_allows_only_before_boot_answers_400_saying_why() throws Exception {
        ApiClient.Reply balloon = client.send("PUT", "/balloon", "{\"amount_mib\": 1}");
        assertEquals(400, balloon.status());
        assertTrue(faultOf(balloon.body()).contains("actovisor boots at run"), balloon.body());
        ApiClient.Reply machine = client.send("PUT", "/machine-config", "{\"vcpu_count\": 2}");
        assertEquals(400, machine.status());
        assertTrue(faultOf(machine.body()).contains("fixed when the VM boots"), machine.body());
        assertTrue(client.send("GET", "/machine-config", null).body().contains("\"vcpu_count\" : 2"));
        assertTrue(client.send("GET", "/vm/config", null).body().contains("\"machine-config\""));
        assertTrue(client.send("GET", "/", null).body().contains("\"app_name\" : \"actovisor\""));
    }

    @Test
    void stats_polling_interval() throws Exception {
        assertEquals(204, client.send("PATCH", "/balloon/statistics", "{\"stats_polling_interval_s\": 5}").status());
        ApiClient.Reply zero = client.send("PATCH", "/balloon/statistics", "{\"stats_polling_interval_s\": 0}");
        assertEquals(400, zero.status());
        assertEquals(List.of("stats interval 5"), VM.calls);
        ApiClient.Reply stats = client.send("GET", "/balloon/statistics", null);
        assertTrue(stats.body().contains("\"target_mib\"") && stats.body().contains("\"actual_mib\""),
                stats.body());
        assertFalse(stats.body().contains("swap_in"), "absent until the guest reports it: " + stats.body());
    }

    @Test
    void groups_answer_204_404_and_409() throws Exception {
        assertEquals(404, client.send("PUT", "/vfio/groups/99", null).status());
        assertEquals(204, client.send("PUT", "/vfio/groups/7", null).status());
        assertEquals(409, client.send("PUT", "/vfio/groups/7", null).status());
        assertEquals(204, client.send("DELETE", "/vfio/groups/7", null).status());
        assertEquals(409, client.send("DELETE", "/vfio/groups/7", null).status());
    }

    @Test
    void unknown_paths_and_methods() throws Exception {
        ApiClient.Reply missing = client.send("GET", "/nothing", null);
        assertEquals(404, missing.status());
        assertEquals("no such resource: /nothing", faultOf(missing.body()));
        HttpResponse<String> wrong = raw("DELETE", "/balloon", null, null, Optional.of(TOKEN));
        assertEquals(405, wrong.statusCode());
        assertEquals(Optional.of("GET, PATCH, PUT"), wrong.headers().firstValue("Allow"));
        assertTrue(faultOf(wrong.body()).contains("allowed: GET, PATCH, PUT"), wrong.body());
    }

    @Test
    void an_ask_timeout_is_503_without_internals() throws Exception {
        VM.timeOut = true;
        ApiClient.Reply reply = client.send("GET", "/vm", null);
        assertEquals(503, reply.status());
        assertFalse(reply.body().contains("pekko://") || reply.body().contains("Actor["), reply.body());
        assertTrue(faultOf(reply.body()).contains("did not answer in time"), reply.body());
    }

    @Test
    void every_request_needs_the_token() throws Exception {
        HttpResponse<String> none = raw("GET", "/vm", null, null, Optional.empty());
        assertEquals(401, none.statusCode());
        assertEquals(Optional.of("Bearer realm=\"actovisor\""), none.headers().firstValue("WWW-Authenticate"));
        assertEquals(401, raw("GET", "/metrics", null, null, Optional.of("wrong")).statusCode());
        assertEquals(401, raw("PUT", "/actions", "application/json", "{\"action_type\": \"Shutdown\"}",
                Optional.of(TOKEN + "x")).statusCode());
        assertEquals(401, raw("GET", "/nothing", null, null, Optional.empty()).statusCode());
        assertEquals(List.of(), VM.calls);
    }

    @Test
    void metrics_are_prometheus_text_0_0_4() throws Exception {
        HttpResponse<String> reply = raw("GET", "/metrics", null, null, Optional.of(TOKEN));
        assertEquals(200, reply.statusCode());
        assertEquals(Optional.of("text/plain; version=0.0.4; charset=UTF-8"),
                reply.headers().firstValue("Content-Type"));
        String text = reply.body();
        assertTrue(text.contains("actovisor_iommu_pinned_bytes{container=\"c\\\"1\"} 0"), text);
        assertEquals(1, text.split("# TYPE actovisor_vcpu_exits_total counter", -1).length - 1, text);
        assertTrue(text.contains("actovisor_vcpu_exits_total{reason=\"io\",vcpu=\"1\"} 3"), text);
        assertTrue(text.contains("actovisor_vm_state{state=\"Running\"} 1"), text);
        assertTrue(text.contains("jvm_memory_used_bytes"), text);
        assertTrue(text.contains("process_cpu_seconds_total"), text);
        assertTrue(text.contains("actovisor_build_info{"), text);
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
    void the_route_table_lists_every_endpoint() {
        Map<String, List<String>> routes = new ApiServer(VM, TOKEN, Optional.empty()).routeTable();
        assertEquals(List.of("DELETE", "PUT"), routes.get("/vfio/groups/{id}"));
        assertEquals(List.of("GET", "PATCH"), routes.get("/vm"));
        assertEquals(11, routes.size(), routes.toString());
    }
}
