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
import java.util.concurrent.LinkedBlockingQueue;
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
 * Topology throughput over N one-page RAM regions (none adjacent: every region is its own section and IOMMU
 * mapping), through AddressSpaceActor and a VfioContainerActor on the model IOMMU, each commit acknowledged;
 * against {@link LockedTopology} doing the same bookkeeping under one lock, with the same incremental flat view
 * ({@code lockedIncremental*}) and with the whole rebuild and diff of QEMU ({@code lockedRebuild*}).
 *
 * <p>{@code *OneCommit}: one operation = add all N in one commit, remove all N in another. {@code *SingleCommit}:
 * the N regions stay mapped; one operation = one commit that adds or removes one more region in a gap between them
 * (alternately), so ops/s at N = 10,000 against N = 1,000 shows what a commit costs as the space grows.
 * {@code actorsPipelinedSingleCommit}: the same commits with up to {@code window} in flight (group commit).
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
    private List<MemoryRegion> extra;
    private LockedTopology incremental;
    private LockedTopology rebuild;
    private boolean actorsPopulated;
    private int actorsNext;
    private int incrementalNext;
    private int rebuildNext;

    @Setup(Level.Trial)
    public void setUp() {
        memory = HostMemory.anonymous("bench-topology", (long) regions * 2 * 4096);
        all = new ArrayList<>();
        extra = new ArrayList<>();
        for (int i = 0; i < regions; i++) {
            // A gap between regions, so no two are neighbours and every region is its own section and mapping.
            all.add(MemoryRegion.ram("r" + i, AddressRange.of(4L * i * 4096, 4096), memory, (long) i * 4096));
            // A region for the gap, for the single commits.
            extra.add(MemoryRegion.ram("x" + i, AddressRange.of((4L * i + 2) * 4096, 4096), memory,
                    (long) (regions + i) * 4096));
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
        incremental = LockedTopology.incremental(ModelIommu.create(65535));
        rebuild = LockedTopology.wholeRebuild(ModelIommu.create(65535));
        incremental.commit(all, List.of());
        rebuild.commit(all, List.of());
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

    private List<AddressSpaceActor.RegionChange> addAll() {
        return all.stream().<AddressSpaceActor.RegionChange>map(AddressSpaceActor.AddRegion::new).toList();
    }

    @Benchmark
    @BenchmarkMode(Mode.Throughput)
    @OutputTimeUnit(TimeUnit.SECONDS)
    public Object actorsOneCommit() {
        if (actorsPopulated) { // the single-commit benchmark of the same trial left the N regions mapped
            commit(all.stream().<AddressSpaceActor.RegionChange>map(r -> new AddressSpaceActor.RemoveRegion(
                    r.name())).toList());
            actorsPopulated = false;
        }
        commit(addAll());
        return commit(all.stream().<AddressSpaceActor.RegionChange>map(r -> new AddressSpaceActor.RemoveRegion(
                r.name())).toList());
    }

    @Benchmark
    @BenchmarkMode(Mode.Throughput)
    @OutputTimeUnit(TimeUnit.SECONDS)
    public int lockedIncrementalOneCommit() {
        LockedTopology fresh = LockedTopology.incremental(ModelIommu.create(65535));
        List<String> names = all.stream().map(MemoryRegion::name).toList();
        fresh.commit(all, List.of());
        return fresh.commit(List.of(), names);
    }

    @Benchmark
    @BenchmarkMode(Mode.Throughput)
    @OutputTimeUnit(TimeUnit.SECONDS)
    public int lockedRebuildOneCommit() {
        LockedTopology fresh = LockedTopology.wholeRebuild(ModelIommu.create(65535));
        List<String> names = all.stream().map(MemoryRegion::name).toList();
        fresh.commit(all, List.of());
        return fresh.commit(List.of(), names);
    }

    @Benchmark
    @BenchmarkMode(Mode.Throughput)
    @OutputTimeUnit(TimeUnit.SECONDS)
    public Object actorsSingleCommit() {
        if (!actorsPopulated) {
            commit(addAll());
            actorsPopulated = true;
        }
        int step = actorsNext++;
        MemoryRegion r = extra.get((step >> 1) % regions);
        return commit(List.of((step & 1) == 0 ? new AddressSpaceActor.AddRegion(r)
                : new AddressSpaceActor.RemoveRegion(r.name())));
    }

    /**
     * Commits a pipelined caller keeps in flight: it waits for the oldest answer before it sends one more. The
     * address space merges up to {@code AddressSpaceActor.MAX_GROUP} (256) queued commits into one update; a window
     * of 512 keeps a full group queued behind the one in flight, so the caller, the address space and the container
     * work at the same time (with a window of 64 they took turns: a group of 63, then a group of 1). At most
     * {@code regions}: commit k and commit k + window touch the same gap.
     */
    @Param({"512"})
    int window;

    /** The pipelined caller's answers, in the order its one reply-to actor received them. */
    private final LinkedBlockingQueue<AddressSpaceActor.CommitResult> answers = new LinkedBlockingQueue<>();
    /** The pipelined caller's reply-to actor (one for all its commits, instead of an ask each). */
    private ActorRef<AddressSpaceActor.CommitResult> replies;
    private int inFlight;
    private long lastAnswered = -1;

    private AddressSpaceActor.CommitResult nextAnswer() {
        try {
            AddressSpaceActor.CommitResult result = answers.poll(Trees.TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
            if (result == null) {
                throw new IllegalStateException("no answer to a pipelined commit within " + Trees.TIMEOUT);
            }
            inFlight--;
            return result;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
        }
    }

    /**
     * The same single-region commits from a caller that does not wait for each answer: one operation sends one
     * commit, with up to {@code window} in flight (a sliding window); each answer must be
     * {@link AddressSpaceActor.Committed}, in commit order. All answers go to one reply-to actor (an ask per commit
     * would add a temporary actor, a future and a scheduled timeout each). The address space sends the commits queued behind the
     * update in flight to the container as one update (group commit).
     */
    @Benchmark
    @BenchmarkMode(Mode.Throughput)
    @OutputTimeUnit(TimeUnit.SECONDS)
    public long actorsPipelinedSingleCommit() {
        if (!actorsPopulated) {
            commit(addAll());
            actorsPopulated = true;
        }
        if (replies == null) {
            replies = system.systemActorOf(Behaviors.receiveMessage(r -> {
                answers.add(r);
                return Behaviors.same();
            }), "pipelined-replies", Props.empty());
        }
        while (inFlight >= window) {
            answered(nextAnswer());
        }
        // Commit k adds a region in a gap, commit k + window removes it again: never both in flight, so no two
        // commits of a group cancel out and every commit's change reaches the container.
        int step = actorsNext++;
        int round = step / window;
        MemoryRegion r = extra.get(((round >> 1) * window + step % window) % regions);
        List<AddressSpaceActor.RegionChange> change = List.of((round & 1) == 0 ? new AddressSpaceActor.AddRegion(r)
                : new AddressSpaceActor.RemoveRegion(r.name()));
        space.tell(new AddressSpaceActor.Commit(change, replies));
        inFlight++;
        return lastAnswered;
    }

    private void answered(AddressSpaceActor.CommitResult result) {
        if (!(result instanceof AddressSpaceActor.Committed) || result.commitId() <= lastAnswered) {
            throw new IllegalStateException("pipelined commit answered " + result + " after " + lastAnswered);
        }
        lastAnswered = result.commitId();
    }

    /** A pipelined caller's last answers are checked too. */
    @TearDown(Level.Iteration)
    public void drainPipeline() {
        while (inFlight > 0) {
            answered(nextAnswer());
        }
    }

    @Benchmark
    @BenchmarkMode(Mode.Throughput)
    @OutputTimeUnit(TimeUnit.SECONDS)
    public int lockedIncrementalSingleCommit() {
        return single(incremental, incrementalNext++);
    }

    @Benchmark
    @BenchmarkMode(Mode.Throughput)
    @OutputTimeUnit(TimeUnit.SECONDS)
    public int lockedRebuildSingleCommit() {
        return single(rebuild, rebuildNext++);
    }

    private int single(LockedTopology locked, int step) {
        MemoryRegion r = extra.get((step >> 1) % regions);
        return (step & 1) == 0 ? locked.commit(List.of(r), List.of()) : locked.commit(List.of(), List.of(r.name()));
    }
}
