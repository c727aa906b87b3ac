package io.actovisor.vmm.api;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.PropertyNamingStrategies;
import com.fasterxml.jackson.databind.SerializationFeature;
import io.actovisor.actors.ask.StageFailures;
import io.actovisor.vmm.api.model.Action;
import io.actovisor.vmm.api.model.Fault;
import java.io.IOException;
import java.net.InetAddress;
import java.net.UnknownHostException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.OptionalLong;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.TimeoutException;
import java.util.function.Function;
import java.util.function.Supplier;
import org.apache.pekko.actor.ClassicActorSystemProvider;
import org.apache.pekko.http.javadsl.Http;
import org.apache.pekko.http.javadsl.ServerBinding;
import org.apache.pekko.http.javadsl.model.ContentType;
import org.apache.pekko.http.javadsl.model.ContentTypes;
import org.apache.pekko.http.javadsl.model.HttpResponse;
import org.apache.pekko.http.javadsl.model.MediaTypes;
import org.apache.pekko.http.javadsl.model.StatusCode;
import org.apache.pekko.http.javadsl.model.StatusCodes;
import org.apache.pekko.http.javadsl.model.headers.RawHeader;
import org.apache.pekko.http.javadsl.server.AllDirectives;
import org.apache.pekko.http.javadsl.server.ExceptionHandler;
import org.apache.pekko.http.javadsl.server.MalformedRequestContentRejection;
import org.apache.pekko.http.javadsl.server.PathMatchers;
import org.apache.pekko.http.javadsl.server.Rejection;
import org.apache.pekko.http.javadsl.server.RejectionHandler;
import org.apache.pekko.http.javadsl.server.Route;
import org.apache.pekko.http.javadsl.unmarshalling.Unmarshaller;
import org.apache.pekko.http.scaladsl.model.EntityStreamSizeException;
import org.apache.pekko.pattern.AskTimeoutException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The management REST API, in Firecracker's vocabulary where the concept exists. Every request needs the bearer
 * token; the API binds to loopback unless remote access is explicitly allowed. Every refusal goes through one
 * handler and is {@code {"fault_message": "..."}}: 400 (bad input, the field named), 401 (with
 * {@code WWW-Authenticate}), 404, 405 (with {@code Allow}), 409 (the VM's state), 413, 415 or 503 (the VM did not
 * answer in time).
 */
public final class ApiServer extends AllDirectives {
    private static final Logger LOG = LoggerFactory.getLogger(ApiServer.class);
    /** The API's JSON: snake_case names from the records, indented. */
    public static final ObjectMapper JSON = new ObjectMapper()
            .setPropertyNamingStrategy(PropertyNamingStrategies.SNAKE_CASE)
            .enable(SerializationFeature.INDENT_OUTPUT);
    /** Request bodies are small JSON objects; anything larger is refused with 413. */
    static final long MAX_BODY_BYTES = 64 * 1024;
    private static final ContentType PROMETHEUS_TEXT = ContentTypes.parse(PrometheusMetrics.CONTENT_TYPE);

    private final VmManagement vm;
    private final byte[] token;
    private final Optional<Path> metricsFile;
    private final PrometheusMetrics prometheus = new PrometheusMetrics();
    /** Each route's path template and methods, filled as {@link #routes()} builds them (for Allow and tests). */
    private final Map<String, List<String>> routeTable = new java.util.concurrent.ConcurrentHashMap<>();

    ApiServer(VmManagement vm, String token, Optional<Path> metricsFile) {
        if (token == null || token.isBlank()) {
            throw new IllegalArgumentException("the API needs a token");
        }
        this.vm = vm;
        this.token = ("Bearer " + token).getBytes(StandardCharsets.UTF_8);
        this.metricsFile = metricsFile;
    }

    /**
     * Bind the API. A non-loopback {@code host} is refused unless {@code allowRemote} is set.
     *
     * @param token       every request must carry {@code Authorization: Bearer token}
     * @param metricsFile where {@code FlushMetrics} writes the metrics text, if anywhere
     * @return the binding; {@code binding.localAddress()} tells the port when 0 was asked
     */
    public static CompletionStage<ServerBinding> bind(ClassicActorSystemProvider system, VmManagement vm, String host,
            int port, boolean allowRemote, String token, Optional<Path> metricsFile) {
        checkBind(host, allowRemote, Optional.ofNullable(token));
        ApiServer server = new ApiServer(vm, token, metricsFile);
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

    /** Each route's path template ({@code /vfio/groups/{id}}) and its methods. */
    Map<String, List<String>> routeTable() {
        if (routeTable.isEmpty()) {
            routes();
        }
        return Map.copyOf(routeTable);
    }

    Route routes() {
        routeTable.clear();
        Route all = concat(instanceRoute(), vmRoutes(), machineConfigRoute(), actionsRoute(), balloonRoutes(),
                vfioRoutes(), discardRoute(), metricsRoute());
        return handleExceptions(exceptions(), () -> handleRejections(rejections(), () -> authorized(() -> all)));
    }

    private Route instanceRoute() {
        Route route = endpoint("/", Map.of("GET", () -> answer(vm.instance())));
        return pathSingleSlash(() -> route);
    }

    private Route vmRoutes() {
        Route vmItself = endpoint("/vm", Map.of(
                "GET", () -> answer(vm.vm()),
                "PATCH", () -> jsonBody(RequestBodies::vmState, s -> done(vm.setState(s.state())))));
        Route config = endpoint("/vm/config", Map.of(
                "GET", () -> answer(CompletableFuture.completedFuture(vm.config()))));
        return pathPrefix("vm", () -> concat(pathEnd(() -> vmItself), path("config", () -> config)));
    }

    private Route machineConfigRoute() {
        Route route = endpoint("/machine-config", Map.of(
                "GET", () -> answer(CompletableFuture.completedFuture(vm.machineConfig())),
                "PUT", () -> complete(fault(400, "the machine configuration is fixed when the VM boots, and "
                        + "actovisor boots at run: set vcpus and memory in the VM definition"))));
        return path("machine-config", () -> route);
    }

    private Route actionsRoute() {
        Route route = endpoint("/actions", Map.of("PUT", () -> jsonBody(RequestBodies::action, this::action)));
        return path("actions", () -> route);
    }

    private Route balloonRoutes() {
        Route balloon = endpoint("/balloon", Map.of(
                "GET", () -> answer(vm.balloon()),
                "PUT", () -> complete(fault(400, "the balloon device is created when the VM boots, and actovisor "
                        + "boots at run: configure it in the VM definition (actovisor.vm.balloon); change its "
                        + "target with PATCH /balloon")),
                "PATCH", () -> jsonBody(RequestBodies::balloonUpdate,
                        b -> done(vm.setBalloonTarget(b.amountMib())))));
        Route statistics = endpoint("/balloon/statistics", Map.of(
                "GET", () -> answer(vm.balloonStatistics()),
                "PATCH", () -> jsonBody(RequestBodies::statsUpdate,
                        s -> done(vm.setStatsPollingInterval(s.statsPollingIntervalS())))));
        return pathPrefix("balloon", () -> concat(pathEnd(() -> balloon), path("statistics", () -> statistics)));
    }

    private Route vfioRoutes() {
        Route vfio = endpoint("/vfio", Map.of("GET", () -> answer(vm.vfio())));
        Function<String, Route> group = id -> endpoint("/vfio/groups/{id}", Map.of(
                "PUT", () -> done(vm.attachGroup(id)),
                "DELETE", () -> done(vm.detachGroup(id))));
        group.apply(""); // the path is matched per request; this enters the template into the route table now
        return pathPrefix("vfio", () -> concat(pathEnd(() -> vfio),
                path(PathMatchers.segment("groups").slash(PathMatchers.segment()), group)));
    }

    private Route discardRoute() {
        Route route = endpoint("/discard", Map.of("GET", () -> answer(vm.discard())));
        return path("discard", () -> route);
    }

    private Route metricsRoute() {
        Route route = endpoint("/metrics", Map.of("GET", () -> completeWithFuture(vm.metrics()
                .thenApply(m -> HttpResponse.create().withStatus(StatusCodes.OK)
                        .withEntity(PROMETHEUS_TEXT, prometheus.render(m).getBytes(StandardCharsets.UTF_8)))
                .exceptionally(ApiServer::failure))));
        return path("metrics", () -> route);
    }

    private Route action(Action action) {
        if (action.actionType() == Action.Type.FlushMetrics) {
            return done(flushMetrics());
        }
        return done(vm.action(action.actionType()));
    }

    /** Firecracker's FlushMetrics: write the metrics text, atomically and readable only by this user. */
    private CompletionStage<Void> flushMetrics() {
        if (metricsFile.isEmpty()) {
            return CompletableFuture.failedFuture(ApiException.badRequest("FlushMetrics: this VMM has no metrics "
                    + "file; read GET /metrics"));
        }
        Path target = metricsFile.get();
        return vm.metrics().thenApply(m -> {
            try {
                Path tmp = Files.createTempFile(target.getParent(), "." + target.getFileName(), ".tmp",
                        PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rw-------")));
                Files.writeString(tmp, prometheus.render(m));
                Files.move(tmp, target, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
                return null;
            } catch (IOException e) {
                throw new ApiException(500, "FlushMetrics: cannot write " + target + ": " + e.getMessage());
            }
        });
    }

    private Route authorized(Supplier<Route> inner) {
        return optionalHeaderValueByName("Authorization", header -> {
            if (header.isPresent() && MessageDigest.isEqual(header.get().getBytes(StandardCharsets.UTF_8), token)) {
                return inner.get();
            }
            return complete(fault(401, header.isPresent() ? "wrong bearer token in the Authorization header"
                    : "missing Authorization: Bearer <token> header (run wrote the token to the VM's access "
                    + "file)").addHeader(RawHeader.create("WWW-Authenticate",
                    "Bearer realm=\"actovisor\"")));
        });
    }

    /** Dispatch by method; any other method is 405 with the Allow header. */
    private Route endpoint(String template, Map<String, Supplier<Route>> handlers) {
        List<String> allowed = new ArrayList<>(handlers.keySet());
        allowed.sort(null);
        routeTable.put(template, allowed);
        return extractMethod(method -> {
            Supplier<Route> handler = handlers.get(method.name());
            if (handler == null) {
                return complete(fault(405, "method " + method.name() + " is not allowed on " + template
                        + "; allowed: " + String.join(", ", allowed))
                        .addHeader(RawHeader.create("Allow", String.join(", ", allowed))));
            }
            try {
                return handler.get();
            } catch (ApiException e) {
                return complete(fault(e.status(), e.getMessage()));
            }
        });
    }

    /** A JSON body parsed strictly by {@code parse}; 415 for another content type, 413 beyond the size limit. */
    private <T> Route jsonBody(Function<String, T> parse, Function<T, Route> inner) {
        return extractRequestEntity(entity -> {
            if (!entity.getContentType().mediaType().equals(MediaTypes.APPLICATION_JSON)) {
                return complete(fault(415, "the body must be JSON with Content-Type: application/json, was "
                        + entity.getContentType()));
            }
            OptionalLong length = entity.getContentLengthOption();
            if (length.isPresent() && length.getAsLong() > MAX_BODY_BYTES) {
                return complete(tooLarge(length.getAsLong()));
            }
            return withSizeLimit(MAX_BODY_BYTES, () -> entity(Unmarshaller.entityToString(), body -> {
                T parsed;
                try {
                    parsed = parse.apply(body);
                } catch (ApiException e) {
                    return complete(fault(e.status(), e.getMessage()));
                }
                return inner.apply(parsed);
            }));
        });
    }

    private static HttpResponse tooLarge(long length) {
        return fault(413, "the body has " + length + " bytes; at most " + MAX_BODY_BYTES + " are accepted");
    }

    private Route answer(CompletionStage<?> result) {
        return completeWithFuture(result.thenApply(value -> json(200, value)).exceptionally(ApiServer::failure));
    }

    /** A change without a response body: 204 on success (Firecracker's code for PUT and PATCH). */
    private Route done(CompletionStage<Void> result) {
        return completeWithFuture(result.thenApply(v -> HttpResponse.create().withStatus(StatusCodes.NO_CONTENT))
                .exceptionally(ApiServer::failure));
    }

    /** One rejection handler: every refusal the routing itself makes, as a fault. */
    private RejectionHandler rejections() {
        return RejectionHandler.newBuilder()
                .handle(MalformedRequestContentRejection.class, r -> complete(sizeExceeded(r.getCause())
                        ? fault(413, "the body is larger than " + MAX_BODY_BYTES + " bytes")
                        : fault(400, "cannot read the body: " + r.message())))
                .handleAll(Rejection.class, rs -> complete(fault(400, "bad request: " + rs.get(0))))
                .handleNotFound(extractUnmatchedPath(p -> complete(fault(404, "no such resource: " + p))))
                .build();
    }

    private ExceptionHandler exceptions() {
        return ExceptionHandler.newBuilder().matchAny(t -> complete(failure(t))).build();
    }

    private static boolean sizeExceeded(Throwable t) {
        for (Throwable c = t; c != null; c = c.getCause()) {
            if (c instanceof EntityStreamSizeException) {
                return true;
            }
        }
        return false;
    }

    static HttpResponse failure(Throwable t) {
        Throwable cause = StageFailures.cause(t);
        if (cause instanceof ApiException e) {
            return fault(e.status(), e.getMessage());
        }
        if (cause instanceof AskTimeoutException || cause instanceof TimeoutException) {
            LOG.warn("The VM did not answer an API request in time: {}", cause.getMessage());
            return fault(503, "the VM did not answer in time; it may be busy, try again");
        }
        if (sizeExceeded(cause)) {
            return fault(413, "the body is larger than " + MAX_BODY_BYTES + " bytes");
        }
        LOG.warn("API request failed", cause);
        return fault(500, "internal error; the VMM's log has the details");
    }

    static HttpResponse fault(int status, String message) {
        return json(status, new Fault(message));
    }

    private static HttpResponse json(int status, Object value) {
        try {
            return HttpResponse.create().withStatus(StatusCodes.get(status))
                    .withEntity(ContentTypes.APPLICATION_JSON, JSON.writeValueAsString(value));
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("cannot render API response", e);
        }
    }
}
