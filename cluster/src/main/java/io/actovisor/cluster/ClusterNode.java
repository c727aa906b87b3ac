package io.actovisor.cluster;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import com.typesafe.config.ConfigParseOptions;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.apache.pekko.actor.ActorSystemImpl;
import org.apache.pekko.actor.CoordinatedShutdown;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.javadsl.Adapter;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.cluster.typed.Cluster;
import org.apache.pekko.http.javadsl.ServerBinding;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One cluster node (host agent) in one actor system: the node agent, VM sharding, the memory controller singleton
 * (proxy) and the API. {@link #start(Config)} returns once the API is bound; the node joins its seeds in the
 * background (Pekko logs each attempt with the seed addresses it tried).
 */
public final class ClusterNode {
    private static final Logger LOG = LoggerFactory.getLogger(ClusterNode.class);
    private final ActorSystem<Void> system;
    private final ClusterSettings settings;
    private final InetSocketAddress api;
    private final String token;

    private ClusterNode(ActorSystem<Void> system, ClusterSettings settings, InetSocketAddress api, String token) {
        this.system = system;
        this.settings = settings;
        this.api = api;
        this.token = token;
    }

    /**
     * The node configuration: {@code user} (the node's file) over the embedded node defaults over the application's
     * and libraries' configuration.
     */
    public static Config config(Config user) {
        Config node = ConfigFactory.parseResources(ClusterNode.class, "/actovisor-cluster-node.conf",
                ConfigParseOptions.defaults().setAllowMissing(false));
        return ConfigFactory.systemProperties().withFallback(user).withFallback(node)
                .withFallback(ConfigFactory.defaultApplication()).withFallback(ConfigFactory.defaultReference())
                .resolve();
    }

    /** Start a node from a resolved configuration (see {@link #config(Config)}). */
    public static ClusterNode start(Config config) throws Exception {
        checkLmdbAccess();
        ClusterSettings settings = ClusterSettings.create(config);
        String token = ApiToken.loadOrCreate(settings.tokenFile());
        CompletableFuture<ClusterApi> api = new CompletableFuture<>();
        ActorSystem<Void> system = ActorSystem.create(guardian(settings, token, api), "actovisor", config);
        try {
            ServerBinding binding = api.get(30, TimeUnit.SECONDS).bind().toCompletableFuture()
                    .get(30, TimeUnit.SECONDS);
            return new ClusterNode(system, settings, binding.localAddress(), token);
        } catch (Exception e) {
            system.terminate();
            system.getWhenTerminated().toCompletableFuture().get(30, TimeUnit.SECONDS);
            throw e;
        }
    }

    /** JVM options the LMDB stores need, as a sentence naming them. */
    public static final String LMDB_JVM_OPTIONS = "--add-opens java.base/java.nio=ALL-UNNAMED "
            + "--add-opens java.base/sun.nio.ch=ALL-UNNAMED";

    /** lmdbjava (the remember-entities and definition stores) reads NIO buffer internals; fail early if it cannot. */
    static void checkLmdbAccess() {
        Module base = Object.class.getModule();
        Module self = ClusterNode.class.getModule();
        if (!base.isOpen("java.nio", self) || !base.isOpen("sun.nio.ch", self)) {
            throw new IllegalArgumentException("this JVM does not open java.nio and sun.nio.ch to actovisor, which the "
                    + "LMDB stores (remember-entities, VM definitions) need: start java with " + LMDB_JVM_OPTIONS
                    + " (the ./actovisor launcher does)");
        }
    }

    private static Behavior<Void> guardian(ClusterSettings settings, String token,
            CompletableFuture<ClusterApi> api) {
        return Behaviors.setup(context -> {
            ActorSystem<Void> system = context.getSystem();
            ClusterData data = new ClusterData(system, settings.askTimeout());
            String address = Cluster.get(system).selfMember().address().toString();
            ActorRef<NodeAgent.Command> agent = context.spawn(NodeAgent.create(settings, data, address), "agent");
            VmEventLog events = VmEventLog.open(settings.dataDir(), address);
            system.getWhenTerminated().thenRun(events::close);
            VmEntity.initSharding(system, settings, data, agent, events);
            ActorRef<MemoryController.Command> controller = MemoryController.initSingleton(system, settings, data);
            api.complete(new ClusterApi(system, settings, data, controller, agent, token));
            return Behaviors.empty();
        });
    }

    public ActorSystem<Void> system() {
        return system;
    }

    public ClusterSettings settings() {
        return settings;
    }

    /** Where the API listens. */
    public InetSocketAddress api() {
        return api;
    }

    public String token() {
        return token;
    }

    /** This node's cluster address. */
    public String address() {
        return Cluster.get(system).selfMember().address().toString();
    }

    /**
     * Wait until this node's actor system has terminated, and say whether it did. Coordinated shutdown bounds each
     * of its phases, the last one included, but the termination it starts has no bound: an actor whose stop never
     * completes would keep the system, and the process waiting for it, alive forever. So once coordinated shutdown
     * has run all its phases, termination gets {@code grace} more; if the system is still alive after that, the
     * actors still alive and the threads still busy (what holds the termination) are logged and this returns false.
     */
    public boolean awaitTermination(Duration grace) throws InterruptedException {
        return awaitTermination(system, grace);
    }

    static boolean awaitTermination(ActorSystem<?> system, Duration grace) throws InterruptedException {
        CompletableFuture<?> terminated = system.getWhenTerminated().toCompletableFuture();
        CoordinatedShutdown shutdown = CoordinatedShutdown.get(system);
        while (!terminated.isDone()) {
            Optional<CoordinatedShutdown.Reason> reason = shutdown.getShutdownReason();
            if (reason.isPresent()) {
                // Shutdown has begun: runAll returns the run in progress, it does not start another.
                try {
                    shutdown.runAll(reason.get()).toCompletableFuture().get(
                            shutdown.totalTimeout().toMillis() + grace.toMillis(), TimeUnit.MILLISECONDS);
                } catch (ExecutionException | TimeoutException e) {
                    LOG.warn("{}: coordinated shutdown did not complete: {}", system.address(), e.toString());
                }
                try {
                    terminated.get(grace.toMillis(), TimeUnit.MILLISECONDS);
                    return true;
                } catch (ExecutionException e) {
                    return true;
                } catch (TimeoutException e) {
                    LOG.error("{}: the actor system has not terminated {} s after coordinated shutdown ran all its "
                            + "phases; the actors still alive:\n{}\nthe threads still busy:\n{}", system.address(),
                            grace.toSeconds(), liveActors(system), busyThreads());
                    return false;
                }
            }
            try {
                terminated.get(1, TimeUnit.SECONDS);
            } catch (ExecutionException | TimeoutException notYet) {
                // Not terminated, or shutdown not begun: look again.
            }
        }
        return true;
    }

    /**
     * The actor tree still alive, as Pekko prints it (its {@code printTree}, a diagnostic of the actor system's
     * implementation; empty if the implementation is another).
     */
    static String liveActors(ActorSystem<?> system) {
        return Adapter.toClassic(system) instanceof ActorSystemImpl impl ? impl.printTree() : "";
    }

    /**
     * The stacks of the threads that may hold termination, for the log: those that are running or blocked (not
     * waiting for work), the JVM's daemons left out, and every thread in actovisor's code.
     */
    static String busyThreads() {
        StringBuilder out = new StringBuilder();
        for (Map.Entry<Thread, StackTraceElement[]> e : Thread.getAllStackTraces().entrySet()) {
            Thread thread = e.getKey();
            StackTraceElement[] stack = e.getValue();
            boolean idle = thread.getState() == Thread.State.WAITING || thread.getState() == Thread.State.TIMED_WAITING;
            if (thread == Thread.currentThread() || ((idle || thread.isDaemon()) && !inActovisor(stack))) {
                continue;
            }
            out.append('"').append(thread.getName()).append("\" ").append(thread.getState()).append('\n');
            for (StackTraceElement frame : stack) {
                out.append("    at ").append(frame).append('\n');
            }
        }
        return out.toString();
    }

    /** Whether a stack passes through actovisor's code (a waiting thread there may be what holds termination). */
    private static boolean inActovisor(StackTraceElement[] stack) {
        for (StackTraceElement frame : stack) {
            if (frame.getClassName().startsWith("io.actovisor.")) {
                return true;
            }
        }
        return false;
    }
}
