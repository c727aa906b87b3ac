package io.actovisor.vmm.api;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.atlassian.oai.validator.OpenApiInteractionValidator;
import com.atlassian.oai.validator.model.Request;
import com.atlassian.oai.validator.model.SimpleRequest;
import com.atlassian.oai.validator.model.SimpleResponse;
import com.atlassian.oai.validator.report.ValidationReport;
import io.swagger.v3.oas.models.OpenAPI;
import io.swagger.v3.parser.OpenAPIV3Parser;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.http.javadsl.ServerBinding;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * docs/openapi.yaml is the contract: the real server's responses to every documented operation (successes and
 * refusals) validate against it with Atlassian's OpenAPI validator, and the server's routes are exactly its paths
 * and methods.
 */
class OpenApiContractTest {
    private static final Path SPEC = Path.of("..", "docs", "openapi.yaml").toAbsolutePath().normalize();
    private static final String TOKEN = "contract";
    private static final ActorTestKit KIT = ActorTestKit.create();
    private static final RecordingVm VM = new RecordingVm();
    private static final HttpClient HTTP = HttpClient.newHttpClient();
    private static ServerBinding binding;
    private static String base;
    private static OpenApiInteractionValidator validator;

    @BeforeAll
    static void bind() throws Exception {
        binding = ApiServer.bind(KIT.system(), VM, "127.0.0.1", 0, false, TOKEN, Optional.empty())
                .toCompletableFuture().get(10, TimeUnit.SECONDS);
        base = "http://127.0.0.1:" + binding.localAddress().getPort();
        validator = OpenApiInteractionValidator.createForInlineApiSpecification(Files.readString(SPEC)).build();
    }

    @AfterAll
    static void unbind() throws Exception {
        binding.unbind().toCompletableFuture().get(10, TimeUnit.SECONDS);
        KIT.shutdownTestKit();
    }

    /** Send one request to the real server and validate request and response against the document. */
    private static int exchange(String method, String path, String body, List<String> problems) throws Exception {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(base + path)).method(method,
                body == null ? HttpRequest.BodyPublishers.noBody() : HttpRequest.BodyPublishers.ofString(body))
                .header("Authorization", "Bearer " + TOKEN);
        if (body != null) {
            b.header("Content-Type", "application/json");
        }
        HttpResponse<String> response = HTTP.send(b.build(), HttpResponse.BodyHandlers.ofString());
        SimpleRequest.Builder request = new SimpleRequest.Builder(Request.Method.valueOf(method), path)
                .withHeader("Authorization", "Bearer " + TOKEN);
        if (body != null) {
            request.withContentType("application/json").withBody(body);
        }
        SimpleResponse.Builder answer = SimpleResponse.Builder.status(response.statusCode());
        response.headers().firstValue("Content-Type").ifPresent(answer::withContentType);
        if (!response.body().isEmpty()) {
            answer.withBody(response.body());
        }
        ValidationReport report = validator.validate(request.build(), answer.build());
        if (report.hasErrors()) {
            problems.add(method + " " + path + " -> " + response.statusCode() + " " + response.body() + ": "
                    + report.getMessages());
        }
        return response.statusCode();
    }

    @Test
    void every_documented_operation_answers_as_documented() throws Exception {
        List<String> problems = new ArrayList<>();
        List<Integer> codes = new ArrayList<>();
        codes.add(exchange("GET", "/", null, problems));
        codes.add(exchange("GET", "/vm", null, problems));
        codes.add(exchange("PATCH", "/vm", "{\"state\": \"Paused\"}", problems));
        codes.add(exchange("PATCH", "/vm", "{\"state\": \"Resumed\"}", problems));
        codes.add(exchange("GET", "/vm/config", null, problems));
        codes.add(exchange("GET", "/machine-config", null, problems));
        codes.add(exchange("PUT", "/machine-config", null, problems));
        codes.add(exchange("PUT", "/actions", "{\"action_type\": \"FlushMetrics\"}", problems));
        codes.add(exchange("PUT", "/actions", "{\"action_type\": \"SendCtrlAltDel\"}", problems));
        codes.add(exchange("PATCH", "/balloon", "{\"amount_mib\": 8}", problems));
        codes.add(exchange("PATCH", "/balloon", "{\"amount_mib\": 65}", problems));
        codes.add(exchange("GET", "/balloon", null, problems));
        codes.add(exchange("PUT", "/balloon", null, problems));
        codes.add(exchange("PATCH", "/balloon/statistics", "{\"stats_polling_interval_s\": 3}", problems));
        codes.add(exchange("GET", "/balloon/statistics", null, problems));
        codes.add(exchange("PUT", "/vfio/groups/7", null, problems));
        codes.add(exchange("GET", "/vfio", null, problems));
        codes.add(exchange("GET", "/discard", null, problems));
        codes.add(exchange("PUT", "/vfio/groups/7", null, problems));
        codes.add(exchange("DELETE", "/vfio/groups/7", null, problems));
        codes.add(exchange("DELETE", "/vfio/groups/8", null, problems));
        codes.add(exchange("GET", "/metrics", null, problems));
        codes.add(exchange("PUT", "/actions", "{\"action_type\": \"Shutdown\"}", problems));
        assertEquals(List.of(), problems);
        assertEquals(List.of(200, 200, 204, 204, 200, 200, 400, 400, 400, 204, 400, 200, 400, 204, 200, 204, 200,
                200, 409, 204, 404, 200, 204), codes);
    }

    @Test
    void a_response_the_document_does_not_allow_is_caught() {
        // The validator itself must see a mismatch: a VmInfo without its required fields.
        ValidationReport report = validator.validate(new SimpleRequest.Builder(Request.Method.GET, "/vm")
                .withHeader("Authorization", "Bearer x").build(), SimpleResponse.Builder.ok()
                .withContentType("application/json").withBody("{\"name\": \"x\", \"vcpus\": 1}").build());
        assertTrue(report.hasErrors(), report.getMessages().toString());
    }

    @Test
    void the_servers_routes_are_exactly_the_documents_paths() {
        OpenAPI api = new OpenAPIV3Parser().read(SPEC.toString());
        assertFalse(api == null || api.getPaths() == null, "cannot read " + SPEC);
        Map<String, List<String>> documented = new TreeMap<>();
        api.getPaths().forEach((path, item) -> documented.put(path, item.readOperationsMap().keySet().stream()
                .map(m -> m.name().toUpperCase(Locale.ROOT)).sorted().toList()));
        Map<String, List<String>> served = new TreeMap<>(new ApiServer(VM, TOKEN, Optional.empty()).routeTable());
        assertEquals(documented, served);
    }
}
