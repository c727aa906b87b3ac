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

/** Latency distribution (p50, p99) of one single-region commit and its undo, acknowledged, actors vs lock. */
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
        locked = new LockedTopology(ModelIommu.create(65535));
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        Trees.terminate(system);
        memory.close();
    }

    @Benchmark
    public Object actorsAddAndRemove() {
        Trees.ask(system, space, (ActorRef<AddressSpaceActor.CommitResult> r) -> new AddressSpaceActor.Commit(
                List.of(new AddressSpaceActor.AddRegion(region)), r));
        return Trees.ask(system, space, (ActorRef<AddressSpaceActor.CommitResult> r) -> new AddressSpaceActor.Commit(
                List.of(new AddressSpaceActor.RemoveRegion("r")), r));
    }

    @Benchmark
    public int lockedAddAndRemove() {
        locked.commit(List.of(region), List.of());
        return locked.commit(List.of(), List.of("r"));
    }
}
