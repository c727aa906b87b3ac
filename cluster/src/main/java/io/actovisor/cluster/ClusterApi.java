package io.actovisor.cluster;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.typesafe.config.Config;
import com.typesafe.config.ConfigException;
import com.typesafe.config.ConfigFactory;
import com.typesafe.config.ConfigParseOptions;
import com.typesafe.config.ConfigSyntax;
import io.actovisor.actors.ask.StageFailures;
import io.actovisor.config.ConfigError;
import io.actovisor.config.ConfigValidationException;
import io.actovisor.config.VmSpec;
import io.actovisor.config.VmSpecParser;
import io.actovisor.config.VmSpecRenderer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.OptionalLong;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.function.Function;
import java.util.function.Supplier;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.javadsl.AskPattern;
import org.apache.pekko.cluster.sharding.typed.javadsl.ClusterSharding;
import org.apache.pekko.cluster.typed.Cluster;
import org.apache.pekko.http.javadsl.Http;
import org.apache.pekko.http.javadsl.ServerBinding;
import org.apache.pekko.http.javadsl.model.ContentTypes;
import org.apache.pekko.http.javadsl.model.HttpResponse;
import org.apache.pekko.http.javadsl.server.AllDirectives;
import org.apache.pekko.http.javadsl.server.PathMatchers;
import org.apache.pekko.http.javadsl.server.Route;
import org.apache.pekko.http.javadsl.unmarshalling.Unmarshaller;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The cluster's REST API, served by every node; any node answers for any VM (it asks the VM's entity through
 * sharding). Every request needs {@code Authorization: Bearer <token>} with the node's token ({@link ApiToken}).
 * Errors are {@code {"fault_message": "..."}}, with {@code "errors": [...]} for an invalid VM definition.
 *
 * <ul>
 * <li>{@code GET /cluster/nodes}: each node's report (capacity, committed, pinned, coordinated-reclaimable,
 * balloonable, actual, its VMs) and its membership status</li>
 * <li>{@code GET /cluster/vms}, {@code POST /cluster/vms} (a definition in HOCON or JSON, with or without the
 * {@code actovisor.vm} wrapper)</li>
 * <li>{@code GET|DELETE /cluster/vms/{id}}, {@code PATCH /cluster/vms/{id}/balloon} ({@code {"target_bytes": N}}
 * or {@code {"amount_mib": N}})</li>
 * <li>{@code GET /cluster/events}: the memory controller's decisions</li>
 * <li>{@code GET /cluster/local}: the VM actors alive in this JVM (what tests count)</li>
 * </ul>
 */
public final class ClusterApi extends AllDirectives {
    private static final Logger LOG = LoggerFactory.getLogger(ClusterApi.class);
    private static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

    private final ActorSystem<?> system;
    private final ClusterSettings settings;
    private final ClusterData data;
    private final ActorRef<MemoryController.Command> controller;
    private final ActorRef<NodeAgent.Command> agent;
    private final String token;

    ClusterApi(ActorSystem<?> system, ClusterSettings settings, ClusterData data,
            ActorRef<MemoryController.Command> controller, ActorRef<NodeAgent.Command> agent, String token) {
        this.system = system;
        this.settings = settings;
        this.data = data;
        this.controller = controller;
        this.agent = agent;
        this.token = token;
    }

    CompletionStage<ServerBinding> bind() {
        return Http.get(system).newServerAt(settings.apiHost(), settings.apiPort()).bind(routes());
    }

    Route routes() {
        Route vms = pathPrefix("vms", () -> concat(
                pathEnd(() -> methods(Map.of(
                        "GET", () -> answer(vms()),
                        "POST", () -> body(b -> answer(create(b)))))),
                path(PathMatchers.segment(), id -> methods(Map.of(
                        "GET", () -> answer(entity(id, VmEntity.GetStatus::new)),
                        "DELETE", () -> answer(entity(id, VmEntity.Delete::new))))),
                path(PathMatchers.segment().slash("balloon"), id -> methods(Map.of(
                        "PATCH", () -> body(b -> answer(setBalloon(id, b))))))));
        Route cluster = pathPrefix("cluster", () -> concat(
                path("nodes", () -> methods(Map.of("GET", () -> answer(nodes())))),
                path("local", () -> methods(Map.of("GET", () -> answer(local())))),
                path("events", () -> methods(Map.of("GET", () -> answer(events())))),
                vms));
        return authorized(() -> concat(cluster,
                extractUnmatchedPath(p -> complete(fault(404, "no such resource: " + p)))));
    }

    /** An answer with a status: what every handler returns. */
    record Answer(int status, Object body) {
    }

    private CompletionStage<Answer> nodes() {
        Map<String, String> status = new LinkedHashMap<>();
        Cluster.get(system).state().getMembers().forEach(m -> status.put(m.address().toString(),
                m.status().toString()));
        return data.nodes().thenApply(reports -> {
            List<Map<String, Object>> out = new ArrayList<>();
            reports.values().stream().sorted(Comparator.comparing(NodeReport::node)).forEach(r -> {
                Map<String, Object> n = new LinkedHashMap<>();
                n.put("node", r.node());
                n.put("member_status", status.getOrDefault(r.node(), "Removed"));
                n.put("capacity_bytes", r.capacityBytes());
                n.put("threshold_bytes", r.thresholdBytes());
                n.put("committed_bytes", r.committedBytes());
                n.put("pinned_bytes", r.pinnedBytes());
                n.put("coordinated_reclaimable_bytes", r.coordinatedReclaimableBytes());
                n.put("balloonable_bytes", r.balloonableBytes());
                n.put("actual_bytes", r.actualBytes());
                n.put("resident_bytes", r.residentBytes());
                n.put("reported_at_millis", r.reportedAtMillis());
                n.put("vms", r.vms());
                out.add(n);
            });
            return new Answer(200, out);
        });
    }

    private CompletionStage<Answer> local() {
        return AskPattern.<NodeAgent.Command, NodeAgent.LocalVms>ask(agent, NodeAgent.GetLocal::new,
                settings.askTimeout(), system.scheduler()).thenApply(l -> new Answer(200, l));
    }

    private CompletionStage<Answer> events() {
        return AskPattern.<MemoryController.Command, MemoryController.EventList>ask(controller,
                MemoryController.GetEvents::new, settings.askTimeout(), system.scheduler())
                .thenApply(l -> new Answer(200, l.events()));
    }

    private CompletionStage<Answer> vms() {
        return data.vms().thenApply(all -> new Answer(200, all.values().stream()
                .sorted(Comparator.comparing(VmRecord::id))
                .map(v -> {
                    Map<String, Object> m = new LinkedHashMap<>();
                    m.put("id", v.id());
                    m.put("node", v.node());
                    m.put("ram_bytes", v.ramBytes());
                    m.put("pinned", v.pinned());
                    m.put("balloonable", v.balloonable());
                    return m;
                }).toList()));
    }

    /** Validate, admit (the controller places and records it), then start it through its entity. */
    private CompletionStage<Answer> create(String body) {
        VmSpec spec;
        try {
            spec = VmSpecParser.parse(definition(body), OptionalLong.empty());
        } catch (ConfigValidationException e) {
            Map<String, Object> fault = new LinkedHashMap<>();
            fault.put("fault_message", e.getMessage());
            fault.put("errors", e.errors().stream().map(ConfigError::toString).toList());
            return CompletableFuture.completedFuture(new Answer(400, fault));
        }
        // A coordinated group counts as pinned here: whether it can give memory back depends on the guest driver
        // (MUST_TELL_HOST), known only once the VM runs; the node reports show the live reading.
        boolean pinned = spec.containers().stream().anyMatch(c -> c.groups().stream().anyMatch(g ->
                g.attachAtStart() && g.discard().orElse(c.discard()) != VmSpec.Discard.ON_DEMAND));
        VmRecord record = new VmRecord(spec.name(), VmSpecRenderer.render(spec), spec.ramBytes(), pinned,
                spec.balloon().enabled() && !pinned, "");
        Duration admitTimeout = settings.askTimeout().multipliedBy(3);
        return AskPattern.<MemoryController.Command, MemoryController.AdmitReply>ask(controller,
                replyTo -> new MemoryController.Admit(record, replyTo), admitTimeout, system.scheduler())
                .thenCompose(admitted -> {
                    if (admitted.status() != 201) {
                        return CompletableFuture.completedFuture(new Answer(admitted.status(),
                                Map.of("fault_message", admitted.message())));
                    }
                    return ask(spec.name(), VmEntity.Ensure::new, settings.startTimeout().plusSeconds(10))
                            .thenApply(reply -> reply.ok() ? new Answer(201, reply.vm()) : reply(reply));
                });
    }

    /** The body as a config holding {@code actovisor.vm}: JSON is HOCON; a bare definition is wrapped. */
    static Config definition(String body) {
        Config parsed;
        try {
            parsed = ConfigFactory.parseString(body, ConfigParseOptions.defaults().setSyntax(ConfigSyntax.CONF)
                    .setOriginDescription("VM definition"));
        } catch (ConfigException e) {
            throw new ConfigValidationException(List.of(new ConfigError("the VM definition", null,
                    "is neither HOCON nor JSON: " + e.getMessage())));
        }
        if (parsed.hasPath("actovisor.vm")) {
            return parsed;
        }
        if (parsed.hasPath("vm")) {
            return parsed.getConfig("vm").atPath("actovisor.vm");
        }
        return parsed.atPath("actovisor.vm");
    }

    private CompletionStage<Answer> setBalloon(String id, String body) {
        long target;
        try {
            JsonNode node = JSON.readTree(body);
            if (node != null && node.has("target_bytes") && node.get("target_bytes").canConvertToLong()) {
                target = node.get("target_bytes").asLong();
            } else if (node != null && node.has("amount_mib") && node.get("amount_mib").canConvertToLong()) {
                target = node.get("amount_mib").asLong() << 20;
            } else {
                return CompletableFuture.completedFuture(new Answer(400, Map.of("fault_message",
                        "expected {\"target_bytes\": N} or {\"amount_mib\": N}, got: " + abbreviate(body))));
            }
        } catch (JsonProcessingException e) {
            return CompletableFuture.completedFuture(new Answer(400, Map.of("fault_message",
                    "the body is not JSON: " + e.getOriginalMessage())));
        }
        long bytes = target;
        return entity(id, replyTo -> new VmEntity.SetBalloon(bytes, "api", replyTo));
    }

    /** Ask a VM's entity, after checking (majority read) that the VM exists, so unknown ids start no entity. */
    private CompletionStage<Answer> entity(String id, Function<ActorRef<VmEntity.Reply>, VmEntity.Command> command) {
        return data.vm(id).thenCompose(record -> record.isEmpty()
                ? CompletableFuture.completedFuture(new Answer(404, Map.of("fault_message", "no VM " + id)))
                : ask(id, command, settings.askTimeout().multipliedBy(3)).thenApply(this::reply));
    }

    private CompletionStage<VmEntity.Reply> ask(String id, Function<ActorRef<VmEntity.Reply>, VmEntity.Command> command,
            Duration timeout) {
        return ClusterSharding.get(system).entityRefFor(VmEntity.TYPE_KEY, id).ask(command::apply, timeout);
    }

    private Answer reply(VmEntity.Reply reply) {
        if (reply.ok()) {
            return new Answer(reply.status(), reply.vm() != null ? reply.vm() : Map.of("message", reply.message()));
        }
        return new Answer(reply.status(), Map.of("fault_message", reply.message()));
    }

    private Route authorized(Supplier<Route> inner) {
        return optionalHeaderValueByName("Authorization", header -> {
            if (header.isPresent() && header.get().equals("Bearer " + token)) {
                return inner.get();
            }
            return complete(fault(401, "missing or wrong bearer token in the Authorization header (the node's "
                    + "token is in its token file)"));
        });
    }

    private Route methods(Map<String, Supplier<Route>> handlers) {
        return extractMethod(method -> {
            Supplier<Route> handler = handlers.get(method.name());
            if (handler == null) {
                return complete(fault(405, "method " + method.name() + " not allowed here; allowed: "
                        + handlers.keySet()));
            }
            return handler.get();
        });
    }

    private Route body(Function<String, Route> inner) {
        return entity(Unmarshaller.entityToString(), inner::apply);
    }

    private Route answer(CompletionStage<Answer> result) {
        return completeWithFuture(result.thenApply(a -> json(a.status(), a.body())).exceptionally(ClusterApi::failure));
    }

    private static HttpResponse failure(Throwable t) {
        Throwable cause = StageFailures.cause(t);
        if (cause instanceof ClusterData.ClusterDataException) {
            return fault(503, cause.getMessage());
        }
        if (cause instanceof java.util.concurrent.TimeoutException) {
            return fault(503, "no answer in time: " + cause.getMessage());
        }
        LOG.warn("cluster API request failed", cause);
        return fault(500, String.valueOf(cause.getMessage()));
    }

    static HttpResponse fault(int status, String message) {
        return json(status, Map.of("fault_message", message));
    }

    private static HttpResponse json(int status, Object value) {
        try {
            return HttpResponse.create().withStatus(status)
                    .withEntity(ContentTypes.APPLICATION_JSON, JSON.writeValueAsString(value));
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("cannot render API response", e);
        }
    }

    private static String abbreviate(String s) {
        return s.length() > 80 ? s.substring(0, 80) + "..." : s;
    }
}
