package io.actovisor.cluster;

import java.time.Duration;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletionStage;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.javadsl.AskPattern;
import org.apache.pekko.cluster.ddata.Key;
import org.apache.pekko.cluster.ddata.LWWMap;
import org.apache.pekko.cluster.ddata.LWWMapKey;
import org.apache.pekko.cluster.ddata.SelfUniqueAddress;
import org.apache.pekko.cluster.ddata.typed.javadsl.DistributedData;
import org.apache.pekko.cluster.ddata.typed.javadsl.Replicator;

/**
 * The cluster's replicated data, in Pekko Distributed Data: VM definitions ({@link #VMS}, read and written with
 * majority consistency, so a definition acknowledged to a client survives the loss of a minority of nodes) and node
 * reports ({@link #NODES}, written locally and spread by gossip: they are refreshed every report interval).
 */
public final class ClusterData {
    /** VM id -> definition and placement. */
    public static final Key<LWWMap<String, VmRecord>> VMS = LWWMapKey.create("vms");
    /** Node address -> its latest report. */
    public static final Key<LWWMap<String, NodeReport>> NODES = LWWMapKey.create("nodes");

    private final ActorSystem<?> system;
    private final ActorRef<Replicator.Command> replicator;
    private final SelfUniqueAddress self;
    private final Duration timeout;

    public ClusterData(ActorSystem<?> system, Duration timeout) {
        this.system = system;
        this.replicator = DistributedData.get(system).replicator();
        this.self = DistributedData.get(system).selfUniqueAddress();
        this.timeout = timeout;
    }

    /** Every VM definition, read from a majority of nodes. */
    public CompletionStage<Map<String, VmRecord>> vms() {
        return get(VMS, new Replicator.ReadMajority(timeout));
    }

    /**
     * Every VM definition as this node's replica has it: what a majority read falls back to when a majority cannot
     * answer (a member that is shutting down and not removed yet). Gossip brings every acknowledged definition here
     * within a gossip interval or two, so only a definition admitted a moment ago can be missing.
     */
    public CompletionStage<Map<String, VmRecord>> vmsHere() {
        return get(VMS, Replicator.readLocal());
    }

    /** One VM's definition, read from a majority of nodes. */
    public CompletionStage<Optional<VmRecord>> vm(String id) {
        return vms().thenApply(all -> Optional.ofNullable(all.get(id)));
    }

    /** The latest report of every node, as this node has them. */
    public CompletionStage<Map<String, NodeReport>> nodes() {
        return get(NODES, Replicator.readLocal());
    }

    /** Store a VM's definition on a majority of nodes; fails if a majority did not confirm in time. */
    public CompletionStage<Void> putVm(VmRecord record) {
        return update(VMS, new Replicator.WriteMajority(timeout), map -> map.put(self, record.id(), record));
    }

    /** Remove a VM's definition on a majority of nodes. */
    public CompletionStage<Void> removeVm(String id) {
        return update(VMS, new Replicator.WriteMajority(timeout), map -> map.remove(self, id));
    }

    /** Publish this node's report (local write, gossiped). */
    public CompletionStage<Void> putNode(NodeReport report) {
        return update(NODES, Replicator.writeLocal(), map -> map.put(self, report.node(), report));
    }

    private <V> CompletionStage<Map<String, V>> get(Key<LWWMap<String, V>> key, Replicator.ReadConsistency read) {
        return AskPattern.<Replicator.Command, Replicator.GetResponse<LWWMap<String, V>>>ask(replicator,
                replyTo -> new Replicator.Get<>(key, read, replyTo), timeout.plusSeconds(1), system.scheduler())
                .thenApply(response -> {
                    if (response instanceof Replicator.GetSuccess<LWWMap<String, V>> success) {
                        return Map.copyOf(success.get(key).getEntries());
                    }
                    if (response instanceof Replicator.NotFound) {
                        return Map.of();
                    }
                    throw new ClusterDataException("cannot read " + key.id() + " from a majority of the nodes within "
                            + timeout.toMillis() + " ms (" + response.getClass().getSimpleName() + ")");
                });
    }

    private <V> CompletionStage<Void> update(Key<LWWMap<String, V>> key, Replicator.WriteConsistency write,
            java.util.function.Function<LWWMap<String, V>, LWWMap<String, V>> modify) {
        return AskPattern.<Replicator.Command, Replicator.UpdateResponse<LWWMap<String, V>>>ask(replicator,
                replyTo -> new Replicator.Update<>(key, LWWMap.create(), write, replyTo, modify),
                timeout.plusSeconds(1), system.scheduler())
                .thenApply(response -> {
                    if (response instanceof Replicator.UpdateSuccess) {
                        return null;
                    }
                    throw new ClusterDataException("cannot write " + key.id() + " to a majority of the nodes within "
                            + timeout.toMillis() + " ms (" + response.getClass().getSimpleName() + ")");
                });
    }

    /** A read or write that did not reach the consistency it asked for. */
    public static final class ClusterDataException extends RuntimeException {
        private static final long serialVersionUID = 1L;

        public ClusterDataException(String message) {
            super(message);
        }
    }
}
