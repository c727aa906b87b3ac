package io.actovisor.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.javadsl.Adapter;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.cluster.MemberStatus;
import org.apache.pekko.cluster.typed.Cluster;
import org.apache.pekko.cluster.typed.Join;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import scala.collection.immutable.IndexedSeq;
import scala.jdk.javaapi.FutureConverters;

/**
 * Where {@link VmAllocationStrategy} puts a VM's shard, on a real one-node cluster with real Distributed Data: on
 * the region of the node admission chose; among the live regions once the node is gone; a shard without a VM with
 * the region that asked, or with a registered region when the coordinator asked. What depends on other members (a
 * node Up without a region, a leaving node, a majority that cannot answer) is in
 * {@link VmAllocationStrategyMembershipTest}.
 */
class VmAllocationStrategyTest {
    private static final long MIB = 1 << 20;
    @TempDir
    static Path dir;
    private static ActorSystem<Void> system;
    private static ClusterData data;
    private static VmAllocationStrategy strategy;
    private static ActorRef region;
    private static ActorRef requester;
    private static String self;

    @BeforeAll
    static void oneNodeCluster() throws Exception {
        int port = FreePort.next();
        Config config = ClusterNode.config(ConfigFactory.parseString("""
                pekko.remote.artery.canonical.port = %d
                pekko.cluster.seed-nodes = []
                actovisor.cluster { data-dir = "%s", guests = none, node.capacity = 64 MiB }
                """.formatted(port, Files.createDirectories(dir.resolve("node")))));
        system = ActorSystem.create(Behaviors.empty(), "actovisor", config);
        Cluster cluster = Cluster.get(system);
        cluster.manager().tell(Join.create(cluster.selfMember().address()));
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (cluster.selfMember().status() != MemberStatus.up() && System.nanoTime() < deadline) {
            Thread.sleep(50);
        }
        assertEquals(MemberStatus.up(), cluster.selfMember().status(), "the one-node cluster did not come Up");
        self = cluster.selfMember().address().toString();
        data = new ClusterData(system, Duration.ofSeconds(5));
        strategy = new VmAllocationStrategy(system, data, ClusterSettings.create(config));
        region = Adapter.toClassic(system.systemActorOf(Behaviors.empty(), "region", org.apache.pekko.actor.typed.Props.empty()));
        requester = Adapter.toClassic(system.systemActorOf(Behaviors.empty(), "requester", org.apache.pekko.actor.typed.Props.empty()));
    }

    @AfterAll
    static void stop() {
        if (system != null) {
            system.terminate();
        }
    }

    private static CompletableFuture<ActorRef> allocate(String shard, Map<ActorRef, IndexedSeq<String>> regions) {
        return FutureConverters.asJava(strategy.allocateShard(requester, shard, regions)).toCompletableFuture();
    }

    private static Map<ActorRef, IndexedSeq<String>> registered() {
        return Map.of(region, scala.collection.immutable.Vector$.MODULE$.<String>empty());
    }

    @Test
    void aVmGoesToTheRegionOfItsNode() throws Exception {
        data.putVm(new VmRecord("placed", "{}", 16 * MIB, false, false, self)).toCompletableFuture().get(10,
                TimeUnit.SECONDS);
        assertSame(region, allocate("placed", registered()).get(10, TimeUnit.SECONDS));
    }

    @Test
    void aVmWhoseNodeIsGoneIsPlacedAgainAmongTheLiveRegions() throws Exception {
        data.putVm(new VmRecord("orphan", "{}", 16 * MIB, false, false, "pekko://actovisor@127.0.0.1:1"))
                .toCompletableFuture().get(10, TimeUnit.SECONDS);
        assertSame(region, allocate("orphan", registered()).get(10, TimeUnit.SECONDS));
    }

    @Test
    void aShardWithoutAVmStaysWithTheRegionThatAsked() throws Exception {
        Map<ActorRef, IndexedSeq<String>> both = Map.of(region, scala.collection.immutable.Vector$.MODULE$.empty(),
                requester, scala.collection.immutable.Vector$.MODULE$.empty());
        assertSame(requester, allocate("unknown", both).get(10, TimeUnit.SECONDS));
    }

    @Test
    void theCoordinatorsOwnRequestIsAnsweredWithARegisteredRegion() throws Exception {
        // The coordinator asks for remembered shards from no region (its ignoreRef): an answer that is not a
        // registered region is dropped, and the shard would have no home until some region registered or stopped.
        assertSame(region, allocate("unknown", registered()).get(10, TimeUnit.SECONDS));
    }
}
