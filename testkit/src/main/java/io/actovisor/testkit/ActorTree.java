package io.actovisor.testkit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.actors.balloon.BalloonActor;
import io.actovisor.actors.balloon.BalloonSettings;
import io.actovisor.actors.discard.DiscardManager;
import io.actovisor.actors.discard.DiscardMode;
import io.actovisor.actors.discard.DiscardState;
import io.actovisor.actors.memory.AddressSpaceActor;
import io.actovisor.actors.vfio.IommuBackend;
import io.actovisor.actors.vfio.VfioContainerActor;
import io.actovisor.actors.vfio.VfioGroupActor;
import io.actovisor.devices.iommu.DmaMapping;
import io.actovisor.devices.iommu.DmaPermissions;
import io.actovisor.devices.iommu.model.ModelIommu;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.GuestAddress;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.MemoryRegion;
import io.actovisor.memory.Section;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Function;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.Props;

/**
 * A VM's actor tree for tests, without a guest: one address space over real host memory (through a
 * {@link PinWatch} Posix), a discard manager, a balloon asking it, containers on the model IOMMU (watched) in a
 * discard mode, and groups; with synchronous helpers,
 * the invariant checks, and fault injection by actor name: {@link #crashAt} crashes a named actor at a chosen
 * message, {@link #link} drops or delays what a group sends its container, a {@code posix} wrapper (such as
 * {@link io.actovisor.testkit.fault.DiscardFault}) fails discards, and {@link #container(String, IommuBackend)}
 * takes a {@link io.actovisor.testkit.fault.FaultyIommu}.
 */
public final class ActorTree implements AutoCloseable {
    public static final long PAGE = 4096;
    private static final Duration TIMEOUT = Duration.ofSeconds(10);

    public final ActorTestKit kit;
    public final Map<String, Boolean> compatible = new java.util.concurrent.ConcurrentHashMap<>();
    /** The discard mode each live group declares. */
    public final Map<String, DiscardMode> modes = new java.util.concurrent.ConcurrentHashMap<>();
    /** Group names ever declared compatible: the pin watch judges by name, also after the group is gone. */
    private final java.util.Set<String> everCompatible = java.util.concurrent.ConcurrentHashMap.newKeySet();
    public final PinWatch pins = new PinWatch(everCompatible::contains);
    public final HostMemory memory;
    public final ActorRef<AddressSpaceActor.Command> space;
    public final ActorRef<DiscardManager.Command> discard;
    public final ActorRef<BalloonActor.Command> balloon;
    public final Map<String, ActorRef<VfioContainerActor.Command>> containers = new LinkedHashMap<>();
    public final Map<String, ActorRef<VfioGroupActor.Command>> groups = new LinkedHashMap<>();
    private static long sequence;
    /** The size of the blocks the discard manager and coordinated containers work in. */
    public final long blockSize;
    private final String id;

    /** Crashes scheduled by actor name: how many more messages the actor handles before it throws. */
    private final Map<String, java.util.concurrent.atomic.AtomicInteger> crashes =
            new java.util.concurrent.ConcurrentHashMap<>();
    private final Map<String, io.actovisor.testkit.fault.Link> links = new java.util.concurrent.ConcurrentHashMap<>();

    public ActorTree(ActorTestKit kit, long memoryPages, BalloonSettings settings) {
        this(kit, memoryPages, settings, VfioContainerActor.DEFAULT_DISCARD_BLOCK_SIZE,
                java.util.function.UnaryOperator.identity());
    }

    /**
     * A tree whose host memory makes its system calls through {@code posix} applied to the pin watch's Posix (for
     * example {@code p -> new DiscardFault(p, 1, Errno.EIO)}).
     */
    public ActorTree(ActorTestKit kit, long memoryPages, BalloonSettings settings,
            java.util.function.UnaryOperator<io.actovisor.memory.sys.Posix> posix) {
        this(kit, memoryPages, settings, VfioContainerActor.DEFAULT_DISCARD_BLOCK_SIZE, posix);
    }

    /** A tree whose discard manager and coordinated containers use blocks of {@code blockSize} bytes. */
    public ActorTree(ActorTestKit kit, long memoryPages, BalloonSettings settings, long blockSize) {
        this(kit, memoryPages, settings, blockSize, java.util.function.UnaryOperator.identity());
    }

    /** A tree with blocks of {@code blockSize} bytes whose host memory calls {@code posix} of the pin watch's. */
    public ActorTree(ActorTestKit kit, long memoryPages, BalloonSettings settings, long blockSize,
            java.util.function.UnaryOperator<io.actovisor.memory.sys.Posix> posix) {
        this.kit = kit;
        this.blockSize = blockSize;
        this.id = "t" + (sequence++);
        this.memory = HostMemory.anonymous(posix.apply(pins.posix()), id + "-ram", memoryPages * PAGE);
        this.space = kit.spawn(faultPoint("memory", AddressSpaceActor.Command.class,
                AddressSpaceActor.create(id + "-memory", Duration.ofSeconds(5))), id + "-memory");
        this.discard = kit.spawn(DiscardManager.create(id + "-discard", DiscardManager.Settings
                .withDrainTimeout(settings.drainTimeout()).withBlockSize(blockSize)
                .withReleaseTimeout(Duration.ofSeconds(3)), java.util.Optional.empty()), id + "-discard");
        this.balloon = kit.spawn(faultPoint("balloon", BalloonActor.Command.class,
                BalloonActor.create(id + "-balloon", space, settings, discard)), id + "-balloon",
                BalloonActor.DISPATCHER);
    }

    /** The names {@link #crashAt} and {@link #link} accept: memory, balloon, the containers and the groups. */
    public java.util.Set<String> actorNames() {
        java.util.Set<String> names = new java.util.LinkedHashSet<>(List.of("memory", "balloon"));
        names.addAll(containers.keySet());
        names.addAll(groups.keySet());
        return names;
    }

    /**
     * Crash the actor called {@code name} when it receives its {@code nth} message from now on (from 1).
     *
     * @throws IllegalArgumentException if the tree has no actor of that name (the message lists those it has)
     */
    public void crashAt(String name, int nth) {
        if (!actorNames().contains(name)) {
            throw new IllegalArgumentException("cannot crash '" + name + "': this tree has no actor of that name; "
                    + "its actors are " + actorNames());
        }
        if (nth < 1) {
            throw new IllegalArgumentException("messages are counted from 1, not " + nth);
        }
        crashes.put(name, new java.util.concurrent.atomic.AtomicInteger(nth));
    }

    /**
     * Put {@code link} between a group and its container: from the next {@link #attach} of group {@code link.from()}
     * to container {@code link.to()} on, the group talks to the container through it.
     *
     * @throws IllegalArgumentException unless {@code from} is a group and {@code to} a container of this tree
     */
    public void link(io.actovisor.testkit.fault.Link link) {
        if (!groups.containsKey(link.from()) || !containers.containsKey(link.to())) {
            throw new IllegalArgumentException("cannot intercept messages from '" + link.from() + "' to '" + link.to()
                    + "': the testkit intercepts what a group sends its container; groups " + groups.keySet()
                    + ", containers " + containers.keySet());
        }
        links.put(link.from() + "->" + link.to(), link);
    }

    /** {@code behavior} with the crash point of actor {@code name} in front of it. */
    private <T> Behavior<T> faultPoint(String name, Class<T> protocol, Behavior<T> behavior) {
        return org.apache.pekko.actor.typed.javadsl.Behaviors.intercept(
                () -> new org.apache.pekko.actor.typed.BehaviorInterceptor<T, T>(protocol) {
                    @Override
                    public Behavior<T> aroundReceive(org.apache.pekko.actor.typed.TypedActorContext<T> ctx, T msg,
                            ReceiveTarget<T> target) {
                        java.util.concurrent.atomic.AtomicInteger left = crashes.get(name);
                        if (left != null && left.decrementAndGet() == 0) {
                            crashes.remove(name);
                            crashed(name);
                            throw new Faults.InjectedFault("injected crash of " + name + " at "
                                    + msg.getClass().getSimpleName());
                        }
                        return target.apply(ctx, msg);
                    }
                }, behavior);
    }

    /** A crashed actor stops (the default supervision): the tree forgets it, so the checks ask only live actors. */
    private void crashed(String name) {
        groups.remove(name);
        compatible.remove(name);
        modes.remove(name);
        containers.remove(name);
    }

    /** A container in discard mode {@code inhibit} on a watched model IOMMU accepting {@code maxMappings} mappings. */
    public ActorRef<VfioContainerActor.Command> container(String name, int maxMappings) {
        return container(name, maxMappings, DiscardMode.INHIBIT);
    }

    /** A container in discard mode {@code mode} on a watched model IOMMU accepting {@code maxMappings} mappings. */
    public ActorRef<VfioContainerActor.Command> container(String name, int maxMappings, DiscardMode mode) {
        IommuBackend backend = pins.backend(ModelIommu.BACKEND, () -> ModelIommu.create(maxMappings));
        return container(name, backend, mode);
    }

    /** A container in discard mode {@code inhibit} on {@code backend}. */
    public ActorRef<VfioContainerActor.Command> container(String name, IommuBackend backend) {
        return container(name, backend, DiscardMode.INHIBIT);
    }

    /** A container in discard mode {@code mode} on {@code backend}. */
    public ActorRef<VfioContainerActor.Command> container(String name, IommuBackend backend, DiscardMode mode) {
        ActorRef<VfioContainerActor.Command> ref = kit.spawn(faultPoint(name, VfioContainerActor.Command.class,
                VfioContainerActor.create(id + "-" + name, space, backend, mode, blockSize)), id + "-" + name,
                VfioContainerActor.DISPATCHER);
        containers.put(name, ref);
        return ref;
    }

    /** A group in discard mode {@code on-demand} if balloon-compatible, else {@code inhibit}. */
    public ActorRef<VfioGroupActor.Command> group(String name, boolean balloonCompatible) {
        return group(name, balloonCompatible ? DiscardMode.ON_DEMAND : DiscardMode.INHIBIT);
    }

    /** A group declaring {@code mode}; it attaches only to containers of that mode. */
    public ActorRef<VfioGroupActor.Command> group(String name, DiscardMode mode) {
        return group(name, mode, VfioGroupActor.create(name, mode, discard));
    }

    /** A group whose behavior is {@code behavior} (e.g. wrapped with a fault-injecting interceptor). */
    public ActorRef<VfioGroupActor.Command> group(String name, boolean balloonCompatible,
            Behavior<VfioGroupActor.Command> behavior) {
        return group(name, balloonCompatible ? DiscardMode.ON_DEMAND : DiscardMode.INHIBIT, behavior);
    }

    /** A group declaring {@code mode} whose behavior is {@code behavior}. */
    public ActorRef<VfioGroupActor.Command> group(String name, DiscardMode mode,
            Behavior<VfioGroupActor.Command> behavior) {
        boolean balloonCompatible = mode == DiscardMode.ON_DEMAND;
        ActorRef<VfioGroupActor.Command> ref = kit.spawn(faultPoint(name, VfioGroupActor.Command.class, behavior),
                id + "-" + name + "-" + (sequence++), Props.empty());
        groups.put(name, ref);
        modes.put(name, mode);
        compatible.put(name, balloonCompatible);
        if (balloonCompatible) {
            everCompatible.add(name);
        }
        return ref;
    }

    /** A RAM region over pages [firstPage, firstPage + pages) of the host memory, at guest page {@code gpaPage}. */
    public MemoryRegion ram(String name, long gpaPage, long firstPage, long pages) {
        return MemoryRegion.ram(name, AddressRange.of(gpaPage * PAGE, pages * PAGE), memory, firstPage * PAGE);
    }

    /**
     * Run {@code assertion} until it passes, for at most 15 s (then its last failure is the test's): the way to
     * wait for the quiescent point after a crash or a stop, when the actors have settled.
     */
    public void eventually(Runnable assertion) {
        TestProbe<Object> probe = kit.createTestProbe();
        try {
            probe.awaitAssert(Duration.ofSeconds(15), () -> {
                assertion.run();
                return null;
            });
        } finally {
            probe.stop();
        }
    }

    public <R> R ask(Class<R> type, Function<ActorRef<R>, Object> message, ActorRef<?> to) {
        TestProbe<R> probe = kit.createTestProbe(type);
        @SuppressWarnings("unchecked")
        ActorRef<Object> target = (ActorRef<Object>) to;
        target.tell(message.apply(probe.ref()));
        try {
            return probe.expectMessageClass(type, TIMEOUT);
        } finally {
            probe.stop(); // a randomized test asks hundreds of thousands of times: the system must stop in time
        }
    }

    public AddressSpaceActor.CommitResult commit(AddressSpaceActor.RegionChange... changes) {
        return ask(AddressSpaceActor.CommitResult.class, r -> new AddressSpaceActor.Commit(List.of(changes), r),
                space);
    }

    public VfioGroupActor.AttachResult attach(String group, String container) {
        return ask(VfioGroupActor.AttachResult.class, r -> attachMessage(group, container, r), groups.get(group));
    }

    /** Ask group {@code group} to attach to {@code container}, through its {@link #link} if it has one. */
    public void attach(String group, String container, ActorRef<VfioGroupActor.AttachResult> replyTo) {
        groups.get(group).tell(attachMessage(group, container, replyTo));
    }

    private VfioGroupActor.Attach attachMessage(String group, String container,
            ActorRef<VfioGroupActor.AttachResult> replyTo) {
        io.actovisor.testkit.fault.Link link = links.get(group + "->" + container);
        ActorRef<VfioContainerActor.Command> target = link == null ? containers.get(container)
                : kit.spawn(link.behavior(containers.get(container)), id + "-link-" + group + "-" + container + "-"
                        + (sequence++));
        return new VfioGroupActor.Attach(target, container, replyTo);
    }

    public VfioGroupActor.DetachResult detach(String group) {
        return ask(VfioGroupActor.DetachResult.class, VfioGroupActor.Detach::new, groups.get(group));
    }

    public BalloonActor.InflateResult inflate(long... frames) {
        return ask(BalloonActor.InflateResult.class, r -> new BalloonActor.Inflate(frames, r), balloon);
    }

    public BalloonActor.DeflateResult deflate(long... frames) {
        return ask(BalloonActor.DeflateResult.class, r -> new BalloonActor.Deflate(frames, r), balloon);
    }

    public BalloonActor.BalloonStatus balloonStatus() {
        return ask(BalloonActor.BalloonStatus.class, BalloonActor.GetStatus::new, balloon);
    }

    /** The discard manager's state: its holders by kind, held frames, released blocks. */
    public DiscardState discardState() {
        return ask(DiscardState.class, DiscardManager.GetState::new, discard);
    }

    public AddressSpaceActor.View view() {
        return ask(AddressSpaceActor.View.class, AddressSpaceActor.GetView::new, space);
    }

    public VfioContainerActor.State containerState(String name) {
        return ask(VfioContainerActor.State.class, VfioContainerActor.GetState::new, containers.get(name));
    }

    public VfioGroupActor.State groupState(String name) {
        return ask(VfioGroupActor.State.class, VfioGroupActor.GetState::new, groups.get(name));
    }

    /** Write a byte that identifies guest page {@code gpaPage} (and a generation) at every 512th byte of it. */
    public static byte pattern(long gpaPage, int generation) {
        return (byte) (1 + ((gpaPage * 31 + generation * 7) % 250));
    }

    /** Stop a group and wait until it is gone. */
    public void stopGroup(String name) {
        ActorRef<VfioGroupActor.Command> ref = groups.remove(name);
        compatible.remove(name);
        modes.remove(name);
        kit.stop(ref, TIMEOUT);
    }

    /** Stop a container and wait until it is gone. */
    public void stopContainer(String name) {
        kit.stop(containers.remove(name), TIMEOUT);
    }

    /**
     * Invariants 1, 2 and 3 (and 6 for pins) at a quiescent point, as {@link Invariants#check(ActorTree)} finds them
     * (no discard touched pinned memory; the discard manager counts exactly the attached groups of each holder kind;
     * every container with groups maps exactly the RAM and ROM sections of the view, in blocks if coordinated, and
     * one without groups maps and pins nothing), and each container knows exactly the groups attached to it.
     */
    public void assertInvariants(String when) {
        assertEquals(List.of(), Invariants.check(this), "invariants " + when);
        Map<String, List<String>> attachedByContainer = new LinkedHashMap<>();
        for (String group : groups.keySet()) {
            groupState(group).container().ifPresent(c -> attachedByContainer.computeIfAbsent(c,
                    k -> new ArrayList<>()).add(group));
        }
        for (String container : containers.keySet()) {
            assertEquals(attachedByContainer.getOrDefault(container, List.of()).stream().sorted().toList(),
                    containerState(container).groups().stream().sorted().toList(),
                    "container " + container + " knows exactly its attached groups " + when);
        }
    }

    /** {@code mappings} split at block boundaries, without the blocks in {@code released}. */
    public static List<DmaMapping> inBlocks(List<DmaMapping> mappings, long blockSize, List<AddressRange> released) {
        List<DmaMapping> out = new ArrayList<>();
        for (DmaMapping m : mappings) {
            long end = m.iova().base() + m.iova().size();
            for (long at = m.iova().base(); at < end; ) {
                long next = Math.min(end, (at / blockSize + 1) * blockSize);
                long block = at / blockSize * blockSize;
                if (released.stream().noneMatch(r -> r.base() == block)) {
                    out.add(new DmaMapping(AddressRange.of(at, next - at), m.host().checkedAdd(at - m.iova().base()),
                            m.permissions()));
                }
                at = next;
            }
        }
        return out;
    }

    /** What a container must map for {@code sections}: RAM and ROM, page-aligned, read-only where read-only. */
    public static List<DmaMapping> expectedMappings(List<Section> sections) {
        List<DmaMapping> out = new ArrayList<>();
        for (Section s : sections) {
            if (!s.kind().isMemory()) {
                continue;
            }
            s.range().alignInward(PAGE).ifPresent(r -> out.add(new DmaMapping(r,
                    s.hostAddress(new GuestAddress(r.base())),
                    s.region().readOnly() ? DmaPermissions.READ : DmaPermissions.READ_WRITE)));
        }
        return out;
    }

    @Override
    public void close() {
        new ArrayList<>(groups.keySet()).forEach(this::stopGroup);
        new ArrayList<>(containers.keySet()).forEach(this::stopContainer);
        kit.stop(balloon, TIMEOUT);
        kit.stop(discard, TIMEOUT);
        kit.stop(space, TIMEOUT);
        memory.close();
    }
}
