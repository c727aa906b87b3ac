package io.actovisor.benchmarks;

import io.actovisor.actors.discard.DiscardMode;
import io.actovisor.actors.discard.DiscardManager;
import io.actovisor.actors.balloon.BalloonActor;
import io.actovisor.actors.balloon.BalloonSettings;
import io.actovisor.actors.memory.AddressSpaceActor;
import io.actovisor.actors.vfio.IommuBackend;
import io.actovisor.actors.vfio.VfioContainerActor;
import io.actovisor.actors.vfio.VfioGroupActor;
import io.actovisor.memory.GuestAddress;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.MemoryRegion;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Props;
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
import org.openjdk.jmh.annotations.Threads;
import org.openjdk.jmh.annotations.Warmup;

/**
 * Attach/detach round trip through the discard manager: 8 groups (8 threads) attach to and detach from one
 * container concurrently; one operation is an attach (describe the container, register with the discard manager,
 * join the container) and a detach (leave the container, unregister), each acknowledged.
 *
 * <p>Against {@link BareChain}s with as many hand-offs between the same dispatchers, with no work: one attach plus
 * one detach makes {@value #HAND_OFFS} hand-offs while another group keeps the container subscribed to its address
 * space (the container's first group adds four: subscribe, update, applied, subscribed).
 * Attach: caller → group → container (Describe) → group → discard manager (Register) → group → container
 * (AttachGroup) → group → caller: 8. Detach: caller → group → container (DetachGroup) → group → discard manager
 * (Unregister) → group → caller: 6.
 */
@State(Scope.Benchmark)
@Fork(1)
@Threads(8)
@Warmup(iterations = 2, time = 2)
@Measurement(iterations = 3, time = 3)
@BenchmarkMode(Mode.SampleTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
public class InhibitBenchmark {
    private ActorSystem<Void> system;
    private HostMemory memory;
    private ActorRef<DiscardManager.Command> discard;
    private ActorRef<BalloonActor.Command> balloon;
    private ActorRef<VfioContainerActor.Command> container;
    private final AtomicInteger groups = new AtomicInteger();
    private ActorRef<BareChain.Hop> containerRelay;
    private ActorRef<BareChain.Hop> discardRelay;

    /** Hand-offs of one attach plus one detach, counted in VfioGroupActor, VfioContainerActor, DiscardManager. */
    static final int HAND_OFFS = 14;

    @Setup(Level.Trial)
    public void setUp() {
        memory = HostMemory.anonymous("bench-inhibit", 1 << 20);
        system = Trees.system("inhibit");
        ActorRef<AddressSpaceActor.Command> space = system.systemActorOf(AddressSpaceActor.create("bench"), "memory",
                Props.empty());
        Trees.ask(system, space, (ActorRef<AddressSpaceActor.CommitResult> r) -> new AddressSpaceActor.Commit(
                List.of(new AddressSpaceActor.AddRegion(MemoryRegion.ram("ram", GuestAddress.ZERO, memory))), r));
        discard = system.systemActorOf(DiscardManager.create("bench", BalloonSettings.DEFAULT.drainTimeout()),
                "discard", DiscardManager.DISPATCHER);
        balloon = system.systemActorOf(BalloonActor.create("bench", space, BalloonSettings.DEFAULT, discard), "balloon",
                BalloonActor.DISPATCHER);
        container = system.systemActorOf(VfioContainerActor.create("c", space, IommuBackend.model(65535)),
                "container", VfioContainerActor.DISPATCHER);
        containerRelay = BareChain.relay(system, "container-relay", VfioContainerActor.DISPATCHER);
        discardRelay = BareChain.relay(system, "discard-relay", DiscardManager.DISPATCHER);
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        Trees.terminate(system);
        memory.close();
    }

    /** One group per benchmark thread. */
    @State(Scope.Thread)
    public static class Group {
        ActorRef<VfioGroupActor.Command> ref;
        BareChain attach;
        BareChain detach;

        @Setup(Level.Trial)
        public void setUp(InhibitBenchmark bench) {
            int id = bench.groups.incrementAndGet();
            ref = bench.system.systemActorOf(VfioGroupActor.create("g" + id, DiscardMode.INHIBIT, bench.discard), "group-" + id,
                    Props.empty());
            ActorRef<BareChain.Hop> g = BareChain.relay(bench.system, "group-relay-" + id, Props.empty());
            ActorRef<BareChain.Hop> c = bench.containerRelay;
            ActorRef<BareChain.Hop> d = bench.discardRelay;
            attach = new BareChain(bench.system, List.of(g, c, g, d, g, c, g));
            detach = new BareChain(bench.system, List.of(g, c, g, d, g));
            if (attach.handOffs() + detach.handOffs() != HAND_OFFS) {
                throw new IllegalStateException("the bare chains make " + (attach.handOffs() + detach.handOffs())
                        + " hand-offs, not " + HAND_OFFS);
            }
        }
    }

    @Benchmark
    public Object attachAndDetach(Group group) {
        Object attached = Trees.ask(system, group.ref, (ActorRef<VfioGroupActor.AttachResult> r) ->
                new VfioGroupActor.Attach(container, "c", r));
        if (!(attached instanceof VfioGroupActor.Attached)) {
            throw new IllegalStateException(attached.toString());
        }
        return Trees.ask(system, group.ref, VfioGroupActor.Detach::new);
    }

    /** The same two asks along bare chains of the same hand-offs between the same dispatchers, no work. */
    @Benchmark
    public Object bareAttachAndDetach(Group group) {
        group.attach.run();
        return group.detach.run();
    }
}
