package io.actovisor.cluster;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigException;
import com.typesafe.config.ConfigFactory;
import com.typesafe.config.ConfigParseOptions;
import io.actovisor.vmm.cli.ApiClient;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import org.apache.pekko.actor.CoordinatedShutdown;

/**
 * {@code ./actovisor cluster ...}: {@code node [FILE]} runs one cluster node in this JVM until it is stopped
 * (SIGINT/SIGTERM: it leaves the cluster, hands its VMs over and exits 0; downed by the Split Brain Resolver: it
 * stops its VMs and exits 2); {@code status|vms|create FILE|delete ID --api URL} talk to a node's API.
 */
public final class ClusterMain {
    /**
     * How long termination may take after coordinated shutdown's last phase before the node exits anyway. Seen
     * needed: Pekko 1.7.0's Artery waits without a deadline for its streams at transport shutdown (apache/pekko#3247).
     */
    static final Duration TERMINATION_GRACE = Duration.ofSeconds(20);

    private ClusterMain() {
    }

    public static void main(String[] args) {
        System.exit(run(args, System.out, System.err));
    }

    static int run(String[] args, PrintStream out, PrintStream err) {
        if (args.length == 0 || args[0].equals("help") || args[0].equals("--help")) {
            usage(out);
            return args.length == 0 ? 1 : 0;
        }
        try {
            return switch (args[0]) {
                case "node" -> node(args, out, err);
                case "status", "vms", "create", "delete" -> client(args, out, err);
                default -> {
                    err.println("actovisor cluster: unknown command '" + args[0] + "'");
                    usage(err);
                    yield 1;
                }
            };
        } catch (IllegalArgumentException | ConfigException e) {
            err.println("actovisor cluster " + args[0] + ": " + e.getMessage());
            return 1;
        } catch (IOException e) {
            err.println("actovisor cluster " + args[0] + ": " + e.getMessage());
            return 1;
        }
    }

    private static void usage(PrintStream out) {
        out.println("usage: actovisor cluster <command>");
        out.println("  node [FILE]                                  run a cluster node (FILE: HOCON, see docs/cluster.md;");
        out.println("                                               without it a one-node cluster on 127.0.0.1:25520)");
        out.println("  status --api URL [--token T|--token-file F]  the nodes and their memory");
        out.println("  vms    --api URL [...]                       the VMs and where they run");
        out.println("  create FILE --api URL [...]                  admit a VM definition (HOCON or JSON)");
        out.println("  delete ID --api URL [...]                    stop and remove a VM");
    }

    private static int node(String[] args, PrintStream out, PrintStream err) throws ConfigException {
        Config user = ConfigFactory.empty();
        if (args.length > 2) {
            throw new IllegalArgumentException("expected at most one FILE, got " + (args.length - 1) + " arguments");
        }
        if (args.length == 2) {
            Path file = Path.of(args[1]);
            if (!Files.isRegularFile(file)) {
                throw new IllegalArgumentException("no such file: " + file);
            }
            user = ConfigFactory.parseFile(file.toFile(), ConfigParseOptions.defaults().setAllowMissing(false));
        }
        ClusterNode node;
        try {
            node = ClusterNode.start(ClusterNode.config(user));
        } catch (IllegalArgumentException | ConfigException e) {
            throw e;
        } catch (Exception e) {
            err.println("actovisor cluster node: cannot start: " + e.getMessage());
            return 1;
        }
        for (String name : new String[] {"INT", "TERM"}) {
            try {
                sun.misc.Signal.handle(new sun.misc.Signal(name), signal -> CoordinatedShutdown.get(node.system())
                        .runAll(CoordinatedShutdown.jvmExitReason()));
            } catch (IllegalArgumentException unavailable) {
                // The JVM shutdown hook still runs coordinated shutdown.
            }
        }
        out.println("cluster node " + node.address() + " started; API http://" + node.api().getHostString() + ":"
                + node.api().getPort() + " (token in " + node.settings().tokenFile() + ")");
        out.flush();
        boolean terminated;
        try {
            terminated = node.awaitTermination(TERMINATION_GRACE);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            terminated = false;
        }
        Optional<CoordinatedShutdown.Reason> reason = CoordinatedShutdown.get(node.system()).getShutdownReason();
        boolean downed = reason.isPresent() && reason.get() == CoordinatedShutdown.clusterDowningReason();
        if (!terminated) {
            // The cluster already sees this node gone (it left, or was downed); exiting frees what is still held.
            err.println("actovisor cluster node: the actor system did not terminate within "
                    + TERMINATION_GRACE.toSeconds() + " s after coordinated shutdown; exiting anyway (the log names "
                    + "the actors and threads that held it)");
        }
        out.println("cluster node " + node.address() + " stopped" + (downed ? " (downed by the cluster)" : ""));
        return downed ? 2 : 0;
    }

    private static int client(String[] args, PrintStream out, PrintStream err) throws IOException {
        List<String> positional = new ArrayList<>();
        String api = null;
        Optional<String> token = Optional.empty();
        for (int i = 1; i < args.length; i++) {
            switch (args[i]) {
                case "--api" -> api = value(args, ++i, "--api");
                case "--token" -> token = Optional.of(value(args, ++i, "--token"));
                case "--token-file" -> token = Optional.of(ApiToken.read(Path.of(value(args, ++i, "--token-file"))));
                default -> positional.add(args[i]);
            }
        }
        if (api == null) {
            throw new IllegalArgumentException("--api URL is required (a node prints it when it starts)");
        }
        ApiClient client = new ApiClient(api, token);
        ApiClient.Reply reply;
        try {
            reply = switch (args[0]) {
                case "status" -> client.send("GET", "/cluster/nodes", null);
                case "vms" -> client.send("GET", "/cluster/vms", null);
                case "create" -> {
                    Path file = Path.of(one(positional, "FILE"));
                    if (!Files.isRegularFile(file)) {
                        throw new IllegalArgumentException("no such file: " + file);
                    }
                    yield client.send("POST", "/cluster/vms", Files.readString(file));
                }
                default -> client.send("DELETE", "/cluster/vms/" + one(positional, "ID"), null);
            };
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return 1;
        } catch (java.net.ConnectException e) {
            err.println("actovisor cluster " + args[0] + ": cannot connect to " + api + ": " + e.getMessage());
            return 1;
        }
        (reply.ok() ? out : err).println(reply.body());
        return reply.ok() ? 0 : 1;
    }

    private static String value(String[] args, int i, String option) {
        if (i >= args.length) {
            throw new IllegalArgumentException(option + " needs a value");
        }
        return args[i];
    }

    private static String one(List<String> positional, String what) {
        if (positional.size() != 1) {
            throw new IllegalArgumentException("expected one " + what + ", got " + positional);
        }
        return positional.get(0);
    }
}
