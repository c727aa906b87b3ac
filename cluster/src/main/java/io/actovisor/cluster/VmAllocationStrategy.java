package io.actovisor.cluster;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CompletionStage;
import org.apache.pekko.actor.ActorRef;
import org.apache.pekko.actor.Address;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.cluster.Member;
import org.apache.pekko.cluster.MemberStatus;
import org.apache.pekko.cluster.sharding.ShardCoordinator;
import org.apache.pekko.cluster.typed.Cluster;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import scala.collection.immutable.IndexedSeq;
import scala.concurrent.Future;
import scala.jdk.javaapi.FutureConverters;

/**
 * Puts each VM's shard (one shard per VM) on the node that admission chose. Placement is decided at admission
 * ({@link MemoryController}), never here: this strategy reads the VM's record from Distributed Data (majority read,
 * so it sees every acknowledged admission) and allocates the shard to that node's region. When that node is gone
 * (it crashed or left), it places the VM again among the live regions with the same {@link Placement} rules,
 * reading capacities from the node reports; if the VM fits nowhere it goes to the region with the most room, and a
 * warning says the node is now over its capacity. A node that is still a member and Up but whose shard region has
 * not registered with the coordinator yet (it joined a moment ago) is not gone: the allocation fails and the
 * coordinator allocates again when the requesting region asks again (every {@code pekko.cluster.sharding
 * .retry-interval}), so a VM is never placed away from the node admission chose because that node's region was
 * slower to register. A shard without a VM record (a request for an unknown id) stays with the region that asked.
 * Rebalancing is off: a running VM never moves because a node joined.
 */
final class VmAllocationStrategy extends ShardCoordinator.AbstractShardAllocationStrategy {
    private static final Logger LOG = LoggerFactory.getLogger(VmAllocationStrategy.class);

    private final ActorSystem<?> system;
    private final ClusterData data;
    private final ClusterSettings settings;

    VmAllocationStrategy(ActorSystem<?> system, ClusterData data, ClusterSettings settings) {
        this.system = system;
        this.data = data;
        this.settings = settings;
    }

    @Override
    public Future<ActorRef> allocateShard(ActorRef requester, String shardId,
            Map<ActorRef, IndexedSeq<String>> currentShardAllocations) {
        Map<String, ActorRef> regions = new HashMap<>();
        currentShardAllocations.keySet().forEach(region -> regions.put(address(region), region));
        CompletionStage<ActorRef> chosen = data.vms().thenCombine(data.nodes(), (vms, nodes) -> {
            VmRecord record = vms.get(shardId);
            if (record == null) {
                return requester;
            }
            ActorRef placed = regions.get(record.node());
            if (placed != null) {
                return placed;
            }
            if (isUp(record.node())) {
                throw new RegionNotRegistered(shardId, record.node());
            }
            return replace(record, vms, nodes, regions);
        }).exceptionallyCompose(failure -> {
            Throwable cause = failure instanceof CompletionException && failure.getCause() != null
                    ? failure.getCause() : failure;
            if (cause instanceof RegionNotRegistered) {
                return CompletableFuture.failedStage(cause);
            }
            LOG.warn("shard {}: cannot read the VM's placement ({}); it starts on the requesting region, and the "
                    + "entity stops again if it has no definition", shardId, cause.getMessage());
            return CompletableFuture.completedStage(requester);
        });
        return FutureConverters.asScala(chosen);
    }

    /** Whether {@code address} is a member of the cluster with status Up (joined, not leaving, not downed). */
    private boolean isUp(String address) {
        for (Member member : Cluster.get(system).state().getMembers()) {
            if (member.address().toString().equals(address)) {
                return member.status() == MemberStatus.up();
            }
        }
        return false;
    }

    /**
     * The VM's node is Up but its shard region has not registered yet: this allocation fails (Pekko logs it and
     * allocates again at the region's next request). No stack trace: the message says it all.
     */
    static final class RegionNotRegistered extends RuntimeException {
        private static final long serialVersionUID = 1L;

        RegionNotRegistered(String shardId, String node) {
            super("shard " + shardId + ": its node " + node + " is Up but its shard region has not registered with "
                    + "the coordinator yet; the allocation is retried at the region's next request", null, false,
                    false);
        }
    }

    /** The VM's node is gone: place it again among the live regions. */
    private ActorRef replace(VmRecord record, Map<String, VmRecord> vms, Map<String, NodeReport> nodes,
            Map<String, ActorRef> regions) {
        List<Placement.Node> candidates = new ArrayList<>();
        for (String address : regions.keySet()) {
            long capacity = Optional.ofNullable(nodes.get(address)).map(NodeReport::capacityBytes)
                    .orElse(settings.capacityBytes());
            long committed = vms.values().stream().filter(v -> v.node().equals(address) && !v.id().equals(record.id()))
                    .mapToLong(VmRecord::ramBytes).sum();
            candidates.add(new Placement.Node(address, capacity, committed));
        }
        Placement.Candidate vm = new Placement.Candidate(record.id(), record.ramBytes(), record.pinned(),
                record.balloonable());
        Placement.Decision decision = Placement.place(vm, candidates, settings.overcommitRatio());
        if (decision instanceof Placement.Placed placed) {
            LOG.info("VM {}: its node {} is gone; {}", record.id(), record.node(), placed.reason());
            return regions.get(placed.node());
        }
        Placement.Node most = candidates.stream().max(java.util.Comparator.comparingLong(
                n -> n.capacityBytes() - n.committedBytes())).orElseThrow();
        LOG.warn("VM {}: its node {} is gone and it fits on no survivor ({}); it starts on {}, which is now over "
                + "its capacity", record.id(), record.node(), ((Placement.Refused) decision).reason(), most.address());
        return regions.get(most.address());
    }

    @Override
    public Future<Set<String>> rebalance(Map<ActorRef, IndexedSeq<String>> currentShardAllocations,
            Set<String> rebalanceInProgress) {
        return FutureConverters.asScala(CompletableFuture.completedFuture(Set.of()));
    }

    private String address(ActorRef region) {
        Address a = region.path().address();
        return a.hasGlobalScope() ? a.toString() : Cluster.get(system).selfMember().address().toString();
    }
}
