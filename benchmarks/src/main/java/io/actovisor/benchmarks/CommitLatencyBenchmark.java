package io.actovisor.benchmarks;

import io.actovisor.actors.memory.AddressSpaceActor;
import io.actovisor.actors.vfio.IommuBackend;
import io.actovisor.actors.vfio.VfioContainerActor;
import io.actovisor.devices.iommu.model.ModelIommu;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.MemoryRegion;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Props;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

/**
 * Latency distribution (p50, p99) of one single-region commit, acknowledged by a VfioContainerActor on the model
 * IOMMU (alternately adding and removing one region): four hand-offs, caller to address space (default
 * dispatcher) to container (blocking-io dispatcher) to address space to caller. Against the same commit under a
 * lock ({@link LockedTopology#incremental}) and against {@link BareChain} with the same four hand-offs between the
 * same dispatchers and no work: the floor a mailbox design pays.
 */
@State(Scope.Benchmark)
@Fork(1)
@Warmup(iterations = 2, time = 2)
@Measurement(iterations = 3, time = 3)
@BenchmarkMode(Mode.SampleTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
public class CommitLatencyBenchmark {
    private ActorSystem<Void> system;
    private ActorRef<AddressSpaceActor.Command> space;
    private HostMemory memory;
    private MemoryRegion region;
    private LockedTopology locked;
    private BareChain bare;
    private boolean actorsMapped;
    private boolean lockedMapped;

    @Setup(Level.Trial)
    public void setUp() {
        memory = HostMemory.anonymous("bench-latency", 4096);
        region = MemoryRegion.ram("r", AddressRange.of(0x100000, 4096), memory, 0);
        system = Trees.system("latency");
        space = system.systemActorOf(AddressSpaceActor.create("bench"), "memory", Props.empty());
        ActorRef<VfioContainerActor.Command> container = system.systemActorOf(VfioContainerActor.create("c",
                space, IommuBackend.model(65535)), "container", VfioContainerActor.DISPATCHER);
        ActorRef<Object> group = system.systemActorOf(Behaviors.ignore(), "group", Props.empty());
        Trees.ask(system, container, (ActorRef<VfioContainerActor.AttachResult> r) ->
                new VfioContainerActor.AttachGroup("g", group, r));
        locked = LockedTopology.incremental(ModelIommu.create(65535));
        ActorRef<BareChain.Hop> spaceRelay = BareChain.relay(system, "space-relay", Props.empty());
        ActorRef<BareChain.Hop> containerRelay = BareChain.relay(system, "container-relay",
                VfioContainerActor.DISPATCHER);
        bare = new BareChain(system, List.of(spaceRelay, containerRelay, spaceRelay));
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        Trees.terminate(system);
        memory.close();
    }

    @Benchmark
    public Object actorsCommit() {
        AddressSpaceActor.RegionChange change = actorsMapped ? new AddressSpaceActor.RemoveRegion("r")
                : new AddressSpaceActor.AddRegion(region);
        actorsMapped = !actorsMapped;
        Object result = Trees.ask(system, space, (ActorRef<AddressSpaceActor.CommitResult> r) ->
                new AddressSpaceActor.Commit(List.of(change), r));
        if (!(result instanceof AddressSpaceActor.Committed c) || c.sectionsAdded() + c.sectionsRemoved() != 1) {
            throw new IllegalStateException(String.valueOf(result));
        }
        return result;
    }

    @Benchmark
    public int lockedCommit() {
        boolean mapped = lockedMapped;
        lockedMapped = !mapped;
        return mapped ? locked.commit(List.of(), List.of("r")) : locked.commit(List.of(region), List.of());
    }

    /** Four hand-offs (caller, default, blocking-io, default, caller) and no work. */
    @Benchmark
    public Object bareFourHandOffs() {
        return bare.run();
    }
}
