package io.actovisor.benchmarks;

import io.actovisor.actors.memory.AddressSpaceActor;
import io.actovisor.actors.vfio.IommuBackend;
import io.actovisor.actors.vfio.VfioContainerActor;
import io.actovisor.devices.iommu.model.ModelIommu;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.MemoryRegion;
import java.util.ArrayList;
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
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

/**
 * Topology throughput: N one-page RAM regions added and then removed, through AddressSpaceActor and a
 * VfioContainerActor on the model IOMMU, each commit acknowledged; against {@link LockedTopology} doing the same
 * bookkeeping under one lock. One operation = add all N and remove all N.
 */
@State(Scope.Benchmark)
@Fork(value = 1, jvmArgsAppend = {"-Xmx2g"})
@Warmup(iterations = 2, time = 2)
@Measurement(iterations = 3, time = 3)
public class TopologyBenchmark {
    @Param({"1000", "10000"})
    int regions;

    private ActorSystem<Void> system;
    private ActorRef<AddressSpaceActor.Command> space;
    private HostMemory memory;
    private List<MemoryRegion> all;
    private LockedTopology locked;

    @Setup(Level.Trial)
    public void setUp() {
        memory = HostMemory.anonymous("bench-topology", (long) regions * 4096);
        all = new ArrayList<>();
        for (int i = 0; i < regions; i++) {
            // A gap between regions, so no two are neighbours and every region is its own section and mapping.
            all.add(MemoryRegion.ram("r" + i, AddressRange.of(2L * i * 4096, 4096), memory, (long) i * 4096));
        }
        system = Trees.system("topology");
        space = system.systemActorOf(AddressSpaceActor.create("bench"), "memory", Props.empty());
        ActorRef<VfioContainerActor.Command> container = system.systemActorOf(VfioContainerActor.create("c",
                space, IommuBackend.model(65535)), "container", VfioContainerActor.DISPATCHER);
        ActorRef<Object> group = system.systemActorOf(Behaviors.ignore(), "group", Props.empty());
        Object attached = Trees.ask(system, container, (ActorRef<VfioContainerActor.AttachResult> r) ->
                new VfioContainerActor.AttachGroup("g", group, r));
        if (!(attached instanceof VfioContainerActor.GroupAttached)) {
            throw new IllegalStateException("container did not attach: " + attached);
        }
        locked = new LockedTopology(ModelIommu.create(65535));
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        Trees.terminate(system);
        memory.close();
    }

    private AddressSpaceActor.CommitResult commit(List<AddressSpaceActor.RegionChange> changes) {
        AddressSpaceActor.CommitResult result = Trees.ask(system, space,
                (ActorRef<AddressSpaceActor.CommitResult> r) -> new AddressSpaceActor.Commit(changes, r));
        if (!(result instanceof AddressSpaceActor.Committed)) {
            throw new IllegalStateException(result.toString());
        }
        return result;
    }

    @Benchmark
    @BenchmarkMode(Mode.Throughput)
    @OutputTimeUnit(TimeUnit.SECONDS)
    public Object actorsOneCommit() {
        List<AddressSpaceActor.RegionChange> add = new ArrayList<>();
        List<AddressSpaceActor.RegionChange> remove = new ArrayList<>();
        for (MemoryRegion r : all) {
            add.add(new AddressSpaceActor.AddRegion(r));
            remove.add(new AddressSpaceActor.RemoveRegion(r.name()));
        }
        commit(add);
        return commit(remove);
    }

    @Benchmark
    @BenchmarkMode(Mode.Throughput)
    @OutputTimeUnit(TimeUnit.SECONDS)
    public Object actorsSingleCommits() {
        Object last = null;
        for (MemoryRegion r : all) {
            last = commit(List.of(new AddressSpaceActor.AddRegion(r)));
        }
        for (MemoryRegion r : all) {
            last = commit(List.of(new AddressSpaceActor.RemoveRegion(r.name())));
        }
        return last;
    }

    @Benchmark
    @BenchmarkMode(Mode.Throughput)
    @OutputTimeUnit(TimeUnit.SECONDS)
    public int lockedOneCommit() {
        List<String> names = all.stream().map(MemoryRegion::name).toList();
        locked.commit(all, List.of());
        return locked.commit(List.of(), names);
    }

    @Benchmark
    @BenchmarkMode(Mode.Throughput)
    @OutputTimeUnit(TimeUnit.SECONDS)
    public int lockedSingleCommits() {
        int n = 0;
        for (MemoryRegion r : all) {
            n += locked.commit(List.of(r), List.of());
        }
        for (MemoryRegion r : all) {
            n += locked.commit(List.of(), List.of(r.name()));
        }
        return n;
    }
}
