package io.actovisor.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.apache.pekko.actor.ActorRef;
import org.apache.pekko.actor.ExtendedActorSystem;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Props;
import org.apache.pekko.actor.typed.javadsl.Adapter;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.cluster.MemberStatus;
import org.apache.pekko.cluster.ddata.typed.javadsl.DistributedData;
import org.apache.pekko.cluster.typed.Cluster;
import org.apache.pekko.cluster.typed.Join;
import org.apache.pekko.cluster.typed.Leave;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.slf4j.LoggerFactory;
import scala.collection.immutable.IndexedSeq;
import scala.jdk.javaapi.FutureConverters;

/**
 * {@link VmAllocationStrategy} where its answer depends on another member, on a real two-node cluster (nodes a and
 * b in this JVM, real Distributed Data; the strategy runs on a, as the coordinator would). The CI failure that led
 * here: node b left gracefully, the coordinator asked for b's remembered shards from no region, a majority read
 * could not reach b, and the answer (the asker, which is no region) was dropped: b's VMs never started on a.
 */
class VmAllocationStrategyMembershipTest {
    private static final long MIB = 1 << 20;
    private static final IndexedSeq<String> NO_SHARDS = scala.collection.immutable.Vector$.MODULE$.empty();

    @TempDir
    Path dir;
    private ActorSystem<Void> a;
    private ActorSystem<Void> b;
    private ClusterData data;
    private VmAllocationStrategy strategy;
    private ActorRef regionOfA;
    private String addressOfB;

    @BeforeEach
    void twoNodes() throws Exception {
        int portA = FreePort.next();
        a = ActorSystem.create(Behaviors.empty(), "actovisor", node("a", portA));
        b = ActorSystem.create(Behaviors.empty(), "actovisor", node("b", FreePort.next()));
        // The replicators (a cluster node starts them with its ClusterData).
        DistributedData.get(a);
        DistributedData.get(b);
        Cluster.get(a).manager().tell(Join.create(Cluster.get(a).selfMember().address()));
        Cluster.get(b).manager().tell(Join.create(Cluster.get(a).selfMember().address()));
        awaitTrue("both nodes Up", () -> allUp(a) && allUp(b));
        addressOfB = Cluster.get(b).selfMember().address().toString();
        Config config = a.settings().config();
        // Reads wait 2 s for a majority; the strategy waits up to 30 s (ask-timeout) for a member to leave Up.
        data = new ClusterData(a, Duration.ofSeconds(2));
        strategy = new VmAllocationStrategy(a, data, ClusterSettings.create(config));
        regionOfA = Adapter.toClassic(a.systemActorOf(Behaviors.empty(), "region", Props.empty()));
        // Both replicators take part in majority writes once each has seen the other Up.
        awaitTrue("a majority write", () -> {
            try {
                data.putVm(new VmRecord("probe", "{}", MIB, false, false, addressOfB)).toCompletableFuture()
                        .get(10, TimeUnit.SECONDS);
                return true;
            } catch (ExecutionException notYet) {
                return false;
            }
        });
    }

    @AfterEach
    void stop() throws Exception {
        for (ActorSystem<Void> system : new ActorSystem[] {b, a}) {
            if (system != null) {
                system.terminate();
                try {
                    system.getWhenTerminated().toCompletableFuture().get(30, TimeUnit.SECONDS);
                } catch (TimeoutException held) {
                    // A system whose peer crashed can stay in Artery's transport shutdown (apache/pekko#3247; see
                    // docs/cluster.md); what this class tests is done by now.
                    LoggerFactory.getLogger(VmAllocationStrategyMembershipTest.class).warn(
                            "{} did not terminate within 30 s:\n{}", system.address(), ClusterNode.liveActors(system));
                }
            }
        }
    }

    /**
     * A node's configuration. Terminating its actor system does not leave the cluster first, as a crash: the test
     * leaves explicitly where it means to.
     */
    private Config node(String name, int port) throws IOException {
        return ClusterNode.config(ConfigFactory.parseString("""
                pekko.remote.artery.canonical.port = %d
                pekko.cluster.seed-nodes = []
                pekko.cluster.jmx.multi-mbeans-in-same-jvm = on
                pekko.coordinated-shutdown.run-by-actor-system-terminate = off
                actovisor.cluster { data-dir = "%s", guests = none, node.capacity = 64 MiB, ask-timeout = 30s }
                """.formatted(port, Files.createDirectories(dir.resolve(name)))));
    }

    private static boolean allUp(ActorSystem<?> system) {
        int up = 0;
        for (var member : Cluster.get(system).state().getMembers()) {
            if (member.status() != MemberStatus.up()) {
                return false;
            }
            up++;
        }
        return up == 2;
    }

    private interface Condition {
        boolean holds() throws Exception;
    }

    private static void awaitTrue(String what, Condition condition) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (!condition.holds()) {
            assertTrue(System.nanoTime() < deadline, "timed out waiting until " + what);
            Thread.sleep(50);
        }
    }

    private void putVm(String id, String node) throws Exception {
        data.putVm(new VmRecord(id, "{}", 16 * MIB, false, false, node)).toCompletableFuture().get(10,
                TimeUnit.SECONDS);
    }

    private CompletableFuture<ActorRef> allocate(ActorRef requester, String shard,
            Map<ActorRef, IndexedSeq<String>> regions) {
        return FutureConverters.asJava(strategy.allocateShard(requester, shard, regions)).toCompletableFuture();
    }

    /** What the coordinator sends its own requests from: no region. */
    private ActorRef coordinatorItself() {
        return ((ExtendedActorSystem) Adapter.toClassic(a)).provider().ignoreRef();
    }

    @Test
    void aRegionsRequestForAVmOfAnUpNodeWithoutARegionFailsAndIsRetriedByThatRegion() throws Exception {
        putVm("early", addressOfB);
        // b is Up; its region has not registered (a region's request repeats every retry-interval).
        ExecutionException failed = assertThrows(ExecutionException.class,
                () -> allocate(regionOfA, "early", Map.of(regionOfA, NO_SHARDS)).get(10, TimeUnit.SECONDS));
        assertInstanceOf(VmAllocationStrategy.RegionNotRegistered.class, failed.getCause());
        assertTrue(failed.getCause().getMessage().contains(addressOfB), failed.getCause().getMessage());
        assertEquals(0, failed.getCause().getStackTrace().length, "the retry is logged without a stack trace");
    }

    @Test
    void theCoordinatorsRequestForAVmOfALeavingNodeWaitsForTheLeaveAndPlacesTheVmAgain() throws Exception {
        putVm("handed-over", addressOfB);
        putVm("handed-over-too", addressOfB);
        // Graceful leave: b's region has handed its shards over (it is no longer registered) while b is still Up.
        // The coordinator asks for each remembered shard, and again for all of them after each hand-off.
        List<CompletableFuture<ActorRef>> allocations = new ArrayList<>();
        for (String shard : List.of("handed-over", "handed-over-too", "handed-over")) {
            allocations.add(allocate(coordinatorItself(), shard, Map.of(regionOfA, NO_SHARDS)));
        }
        Thread.sleep(500);
        for (CompletableFuture<ActorRef> allocation : allocations) {
            assertFalse(allocation.isDone(), "b is still Up: the coordinator's request waits, it is not repeated");
        }
        Cluster.get(b).manager().tell(Leave.create(Cluster.get(b).selfMember().address()));
        for (CompletableFuture<ActorRef> allocation : allocations) {
            assertSame(regionOfA, allocation.get(25, TimeUnit.SECONDS));
        }
    }

    @Test
    void aMajorityThatCannotAnswerIsReplacedByThisNodesReplica() throws Exception {
        ActorRef regionOfC = ((ExtendedActorSystem) Adapter.toClassic(a)).provider().resolveActorRef(
                "pekko://actovisor@127.0.0.1:1/system/sharding/vm");
        String addressOfC = regionOfC.path().address().toString();
        putVm("elsewhere", addressOfC);
        // b crashes: it stays a member (unreachable, then downed seconds later), so a majority of {a, b} cannot
        // answer in the meantime.
        b.terminate();
        b.getWhenTerminated().toCompletableFuture().get(30, TimeUnit.SECONDS);
        ExecutionException majority = assertThrows(ExecutionException.class,
                () -> data.vms().toCompletableFuture().get(10, TimeUnit.SECONDS));
        assertInstanceOf(ClusterData.ClusterDataException.class, majority.getCause());
        assertSame(regionOfC, allocate(regionOfA, "elsewhere", Map.of(regionOfA, NO_SHARDS, regionOfC, NO_SHARDS))
                .get(10, TimeUnit.SECONDS), "the VM goes to its node's region, read from a's replica");
    }
}
