package io.actovisor.cluster;

import io.actovisor.actors.ask.StageFailures;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
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
 * warning says the node is now over its capacity. Rebalancing is off: a running VM never moves because a node joined.
 *
 * <p>Who asks matters, because only some requests are repeated. A shard region that needs a shard asks again every
 * {@code pekko.cluster.sharding.retry-interval} until the shard has a home. The coordinator's own requests, for the
 * remembered shards it must place again after a hand-off, a region's termination or a region's registration, come
 * from no region and are not repeated; the next such event is the only retry. So:
 * <ul>
 *   <li>A node that is still a member and Up but whose region is not among the registered ones: when a region asked,
 *       the allocation fails and that region's next request retries it (the node joined a moment ago and its region
 *       is slower to register; the VM is never placed away from the node admission chose because of that). When the
 *       coordinator asked, the node may be handing its shards over before it leaves (graceful leave: sharding stops
 *       before the member leaves Up), so the strategy waits, up to {@code actovisor.cluster.ask-timeout}, for the
 *       member to leave Up and then places the VM again; if it stays Up the allocation fails and its region's
 *       registration allocates again.</li>
 *   <li>When a majority of the nodes cannot answer the read (a member that is shutting down is counted until it is
 *       removed), the strategy reads this node's replica, which gossip keeps complete but for a definition admitted
 *       a moment ago.</li>
 *   <li>A shard without a VM record (a request for an unknown id, or a VM deleted while remembered) goes to the region
 *       that asked, or for the coordinator's own request to a registered region (this node's if it has one): its
 *       entity finds no definition and passivates, which also forgets it.</li>
 * </ul>
 * The answer is always a registered region or a failure: a coordinator's request answered with anything else would
 * be dropped, and its shard would stay without a home until some region registered or stopped.
 */
final class VmAllocationStrategy extends ShardCoordinator.AbstractShardAllocationStrategy {
    private static final Logger LOG = LoggerFactory.getLogger(VmAllocationStrategy.class);
    /** How often a coordinator's request waiting for a member to leave Up looks at the membership again. */
    private static final long LEAVE_POLL_MILLIS = 200;

    private final ActorSystem<?> system;
    private final ClusterData data;
    private final ClusterSettings settings;
    /** Members Up without a registered region that a coordinator's request waits for: address -> left Up. */
    private final Map<String, CompletableFuture<Boolean>> leaving = new ConcurrentHashMap<>();

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
        boolean regionAsked = currentShardAllocations.containsKey(requester);
        ActorRef unplaced = regionAsked || regions.isEmpty() ? requester : anyRegion(regions);
        CompletionStage<ActorRef> chosen = placements(shardId).thenCombine(data.nodes(), Placements::new)
                .thenCompose(known -> allocate(shardId, known, regions, regionAsked, unplaced))
                .exceptionallyCompose(failure -> {
                    Throwable cause = StageFailures.cause(failure);
                    if (cause instanceof RegionNotRegistered) {
                        return CompletableFuture.failedStage(cause);
                    }
                    LOG.warn("shard {}: cannot read the VM's placement ({}); it starts on {}, and the entity stops "
                            + "again if it has no definition", shardId, cause.getMessage(), address(unplaced));
                    return CompletableFuture.completedStage(unplaced);
                });
        return FutureConverters.asScala(chosen);
    }

    /** The VM records, from a majority of the nodes or, when a majority cannot answer, from this node's replica. */
    private CompletionStage<Map<String, VmRecord>> placements(String shardId) {
        return data.vms().exceptionallyCompose(failure -> {
            LOG.warn("shard {}: {}; the VM's placement is read from this node's replica", shardId,
                    StageFailures.cause(failure).getMessage());
            return data.vmsHere();
        });
    }

    private record Placements(Map<String, VmRecord> vms, Map<String, NodeReport> nodes) {
    }

    private CompletionStage<ActorRef> allocate(String shardId, Placements known, Map<String, ActorRef> regions,
            boolean regionAsked, ActorRef unplaced) {
        VmRecord record = known.vms().get(shardId);
        if (record == null) {
            return CompletableFuture.completedStage(unplaced);
        }
        ActorRef placed = regions.get(record.node());
        if (placed != null) {
            return CompletableFuture.completedStage(placed);
        }
        if (!isUp(record.node())) {
            return CompletableFuture.completedStage(replace(record, known, regions));
        }
        if (regionAsked) {
            return CompletableFuture.failedStage(new RegionNotRegistered(shardId, record.node()));
        }
        return whenNotUp(record.node()).thenApply(left -> {
            if (!left) {
                throw new RegionNotRegistered(shardId, record.node());
            }
            return replace(record, known, regions);
        });
    }

    /**
     * True once {@code address} is no longer an Up member, false if it still is after {@code ask-timeout}. One wait
     * per member: a leaving node's hand-off asks for every remembered shard again after each shard it hands over.
     */
    private CompletionStage<Boolean> whenNotUp(String address) {
        CompletableFuture<Boolean> fresh = new CompletableFuture<>();
        CompletableFuture<Boolean> pending = leaving.putIfAbsent(address, fresh);
        if (pending != null) {
            return pending;
        }
        poll(address, System.nanoTime() + settings.askTimeout().toNanos()).whenComplete((left, failure) -> {
            leaving.remove(address, fresh);
            if (failure != null) {
                fresh.completeExceptionally(failure);
            } else {
                fresh.complete(left);
            }
        });
        return fresh;
    }

    private CompletionStage<Boolean> poll(String address, long deadline) {
        if (!isUp(address)) {
            return CompletableFuture.completedStage(true);
        }
        if (System.nanoTime() - deadline >= 0) {
            return CompletableFuture.completedStage(false);
        }
        return CompletableFuture.runAsync(() -> { },
                CompletableFuture.delayedExecutor(LEAVE_POLL_MILLIS, TimeUnit.MILLISECONDS, system.executionContext()))
                .thenCompose(ignored -> poll(address, deadline));
    }

    /** A registered region for a shard no region asked for: this node's when it has one. */
    private ActorRef anyRegion(Map<String, ActorRef> regions) {
        ActorRef local = regions.get(Cluster.get(system).selfMember().address().toString());
        return local != null ? local : regions.values().iterator().next();
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
     * The VM's node is Up but its shard region is not registered: this allocation fails (Pekko logs it; the asking
     * region's next request or the node's registration allocates again). No stack trace: the message says it all.
     */
    static final class RegionNotRegistered extends RuntimeException {
        private static final long serialVersionUID = 1L;

        RegionNotRegistered(String shardId, String node) {
            super("shard " + shardId + ": its node " + node + " is Up but its shard region is not registered with "
                    + "the coordinator; the allocation is retried at the region's next request or when that region "
                    + "registers", null, false, false);
        }
    }

    /** The VM's node is gone: place it again among the live regions. */
    private ActorRef replace(VmRecord record, Placements known, Map<String, ActorRef> regions) {
        Map<String, VmRecord> vms = known.vms();
        Map<String, NodeReport> nodes = known.nodes();
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
