package io.actovisor.vmm.api;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import java.net.InetAddress;
import java.net.UnknownHostException;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CompletionStage;
import java.util.function.Function;
import java.util.function.Supplier;
import org.apache.pekko.actor.ClassicActorSystemProvider;
import org.apache.pekko.http.javadsl.Http;
import org.apache.pekko.http.javadsl.ServerBinding;
import org.apache.pekko.http.javadsl.model.ContentTypes;
import org.apache.pekko.http.javadsl.model.HttpResponse;
import org.apache.pekko.http.javadsl.model.StatusCodes;
import org.apache.pekko.http.javadsl.server.AllDirectives;
import org.apache.pekko.http.javadsl.server.PathMatchers;
import org.apache.pekko.http.javadsl.server.Route;
import org.apache.pekko.http.javadsl.unmarshalling.Unmarshaller;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The management REST API, in Firecracker's vocabulary where it fits. Bound to loopback unless remote access is
 * explicitly allowed with a bearer token. Errors are {@code {"fault_message": "..."}} with 400 (bad input, the field
 * named), 401, 404, 405 or 409.
 */
public final class ApiServer extends AllDirectives {
    private static final Logger LOG = LoggerFactory.getLogger(ApiServer.class);
    private static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

    private final VmManagement vm;
    private final Optional<String> token;

    private ApiServer(VmManagement vm, Optional<String> token) {
        this.vm = vm;
        this.token = token;
    }

    /**
     * Bind the API. A non-loopback {@code host} is refused unless {@code allowRemote} and a token are given.
     *
     * @return the binding; {@code binding.localAddress()} tells the port when 0 was asked
     */
    public static CompletionStage<ServerBinding> bind(ClassicActorSystemProvider system, VmManagement vm, String host,
            int port, boolean allowRemote, Optional<String> token) {
        checkBind(host, allowRemote, token);
        ApiServer server = new ApiServer(vm, token.filter(t -> !t.isBlank()));
        return Http.get(system).newServerAt(host, port).bind(server.routes());
    }

    static void checkBind(String host, boolean allowRemote, Optional<String> token) {
        boolean loopback;
        try {
            loopback = InetAddress.getByName(host).isLoopbackAddress();
        } catch (UnknownHostException e) {
            throw new IllegalArgumentException("api.host: cannot resolve '" + host + "'");
        }
        if (!loopback && !(allowRemote && token.filter(t -> !t.isBlank()).isPresent())) {
            throw new IllegalArgumentException("api.host = '" + host + "' is not a loopback address; a remote "
                    + "bind needs api.allow-remote = true and an api.token");
        }
    }

    Route routes() {
        return authorized(() -> concat(
                path("vm", () -> methods(Map.of("GET", () -> answer(vm.vm())))),
                path("actions", () -> methods(Map.of("PUT", () -> body(b -> answer(
                        vm.action(RequestBodies.action(b)).thenApply(v -> null), StatusCodes.NO_CONTENT))))),
                pathPrefix("balloon", () -> concat(
                        pathEnd(() -> methods(Map.of(
                                "GET", () -> answer(vm.balloon()),
                                "PATCH", () -> body(b -> answer(vm.setBalloonTarget(RequestBodies.amountMib(b))))))),
                        path("statistics", () -> methods(Map.of("GET", () -> answer(vm.balloonStatistics())))))),
                pathPrefix("vfio", () -> concat(
                        pathEnd(() -> methods(Map.of("GET", () -> answer(vm.vfio())))),
                        path(PathMatchers.segment("groups").slash(PathMatchers.segment()), id -> methods(Map.of(
                                "PUT", () -> answer(vm.attachGroup(id)),
                                "DELETE", () -> answer(vm.detachGroup(id))))))),
                path("metrics", () -> methods(Map.of("GET", () -> completeWithFuture(vm.metrics()
                        .thenApply(m -> HttpResponse.create().withStatus(StatusCodes.OK).withEntity(
                                ContentTypes.TEXT_PLAIN_UTF8, PrometheusText.render(m)))
                        .exceptionally(ApiServer::failure))))),
                extractUnmatchedPath(p -> complete(fault(404, "no such resource: " + p)))));
    }

    private Route authorized(Supplier<Route> inner) {
        if (token.isEmpty()) {
            return inner.get();
        }
        return optionalHeaderValueByName("Authorization", header -> {
            if (header.isPresent() && header.get().equals("Bearer " + token.get())) {
                return inner.get();
            }
            return complete(fault(401, "missing or wrong bearer token in the Authorization header"));
        });
    }

    /** Dispatch by method; any other method is 405 naming the allowed ones. */
    private Route methods(Map<String, Supplier<Route>> handlers) {
        return extractMethod(method -> {
            Supplier<Route> handler = handlers.get(method.name());
            if (handler == null) {
                return complete(fault(405, "method " + method.name() + " not allowed here; allowed: "
                        + handlers.keySet()));
            }
            try {
                return handler.get();
            } catch (ApiException e) {
                return complete(fault(e.status(), e.getMessage()));
            }
        });
    }

    private Route body(Function<String, Route> inner) {
        return entity(Unmarshaller.entityToString(), b -> {
            try {
                return inner.apply(b);
            } catch (ApiException e) {
                return complete(fault(e.status(), e.getMessage()));
            }
        });
    }

    private Route answer(CompletionStage<?> result) {
        return answer(result, StatusCodes.OK);
    }

    private Route answer(CompletionStage<?> result, org.apache.pekko.http.javadsl.model.StatusCode ok) {
        return completeWithFuture(result.thenApply(value -> value == null
                        ? HttpResponse.create().withStatus(ok)
                        : json(ok.intValue(), value))
                .exceptionally(ApiServer::failure));
    }

    private static HttpResponse failure(Throwable t) {
        Throwable cause = t instanceof CompletionException && t.getCause() != null ? t.getCause() : t;
        if (cause instanceof ApiException e) {
            return fault(e.status(), e.getMessage());
        }
        LOG.warn("API request failed", cause);
        return fault(500, String.valueOf(cause.getMessage()));
    }

    static HttpResponse fault(int status, String message) {
        Map<String, Object> body = new LinkedHashMap<>();
        body.put("fault_message", message);
        return json(status, body);
    }

    private static HttpResponse json(int status, Object value) {
        try {
            return HttpResponse.create().withStatus(status)
                    .withEntity(ContentTypes.APPLICATION_JSON, JSON.writeValueAsString(value));
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("cannot render API response", e);
        }
    }

    /** Prometheus text exposition format 0.0.4. */
    static final class PrometheusText {
        private PrometheusText() {
        }

        static String render(List<VmManagement.Metric> metrics) {
            StringBuilder out = new StringBuilder();
            String current = null;
            for (VmManagement.Metric m : metrics) {
                if (!m.name().equals(current)) {
                    out.append("# HELP ").append(m.name()).append(' ').append(m.help()).append('\n');
                    out.append("# TYPE ").append(m.name()).append(' ').append(m.type()).append('\n');
                    current = m.name();
                }
                out.append(m.name());
                if (!m.labels().isEmpty()) {
                    out.append('{');
                    String sep = "";
                    for (Map.Entry<String, String> l : m.labels().entrySet()) {
                        out.append(sep).append(l.getKey()).append("=\"")
                                .append(l.getValue().replace("\\", "\\\\").replace("\"", "\\\"")).append('"');
                        sep = ",";
                    }
                    out.append('}');
                }
                double v = m.value();
                out.append(' ').append(v == Math.rint(v) && Math.abs(v) < 1e15 ? Long.toString((long) v)
                        : Double.toString(v)).append('\n');
            }
            return out.toString();
        }
    }
}
