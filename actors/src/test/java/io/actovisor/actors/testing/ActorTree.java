package io.actovisor.actors.testing;

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
 * The seed's actor tree for tests: one address space over real host memory (through a {@link PinWatch} Posix), a
 * balloon, containers on the model IOMMU (watched) and groups; with synchronous helpers and the invariant checks.
 */
public final class ActorTree implements AutoCloseable {
    public static final long PAGE = 4096;
    private static final Duration TIMEOUT = Duration.ofSeconds(10);

    public final ActorTestKit kit;
    public final Map<String, Boolean> compatible = new java.util.concurrent.ConcurrentHashMap<>();
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
    public final long blockSize;
    private final String id;

    public ActorTree(ActorTestKit kit, long memoryPages, BalloonSettings settings) {
        this(kit, memoryPages, settings, VfioContainerActor.DEFAULT_DISCARD_BLOCK_SIZE);
    }

    /** A tree whose discard manager and containers use blocks of {@code blockSize} bytes. */
    public ActorTree(ActorTestKit kit, long memoryPages, BalloonSettings settings, long blockSize) {
        this.kit = kit;
        this.blockSize = blockSize;
        this.id = "t" + (sequence++);
        this.memory = HostMemory.anonymous(pins.posix(), id + "-ram", memoryPages * PAGE);
        this.space = kit.spawn(AddressSpaceActor.create(id + "-memory", Duration.ofSeconds(5)), id + "-memory");
        this.discard = kit.spawn(DiscardManager.create(id + "-discard", DiscardManager.Settings
                .withDrainTimeout(settings.drainTimeout()).withBlockSize(blockSize)
                .withReleaseTimeout(Duration.ofSeconds(3)), java.util.Optional.empty()), id + "-discard");
        this.balloon = kit.spawn(BalloonActor.create(id + "-balloon", space, settings, discard), id + "-balloon",
                BalloonActor.DISPATCHER);
    }

    /** A container on a watched model IOMMU accepting {@code maxMappings} mappings. */
    public ActorRef<VfioContainerActor.Command> container(String name, int maxMappings) {
        return container(name, maxMappings, DiscardMode.INHIBIT);
    }

    /** A container in discard mode {@code mode} on a watched model IOMMU accepting {@code maxMappings} mappings. */
    public ActorRef<VfioContainerActor.Command> container(String name, int maxMappings, DiscardMode mode) {
        IommuBackend backend = pins.backend(ModelIommu.BACKEND, () -> ModelIommu.create(maxMappings));
        return container(name, backend, mode);
    }

    public ActorRef<VfioContainerActor.Command> container(String name, IommuBackend backend) {
        return container(name, backend, DiscardMode.INHIBIT);
    }

    public ActorRef<VfioContainerActor.Command> container(String name, IommuBackend backend, DiscardMode mode) {
        ActorRef<VfioContainerActor.Command> ref = kit.spawn(VfioContainerActor.create(id + "-" + name, space,
                backend, mode, blockSize), id + "-" + name,
                VfioContainerActor.DISPATCHER);
        containers.put(name, ref);
        return ref;
    }

    public ActorRef<VfioGroupActor.Command> group(String name, boolean balloonCompatible) {
        return group(name, balloonCompatible, VfioGroupActor.create(name, balloonCompatible ? DiscardMode.ON_DEMAND
                : DiscardMode.INHIBIT, discard));
    }

    /** A group declaring {@code mode}. */
    public ActorRef<VfioGroupActor.Command> group(String name, DiscardMode mode) {
        return group(name, mode == DiscardMode.ON_DEMAND, VfioGroupActor.create(name, mode, discard));
    }

    /** A group whose behavior is {@code behavior} (e.g. wrapped with a fault-injecting interceptor). */
    public ActorRef<VfioGroupActor.Command> group(String name, boolean balloonCompatible,
            Behavior<VfioGroupActor.Command> behavior) {
        ActorRef<VfioGroupActor.Command> ref = kit.spawn(behavior, id + "-" + name + "-" + (sequence++),
                Props.empty());
        groups.put(name, ref);
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

    public <R> R ask(Class<R> type, Function<ActorRef<R>, Object> message, ActorRef<?> to) {
        TestProbe<R> probe = kit.createTestProbe(type);
        @SuppressWarnings("unchecked")
        ActorRef<Object> target = (ActorRef<Object>) to;
        target.tell(message.apply(probe.ref()));
        try {
            return probe.expectMessageClass(type, TIMEOUT);
        } finally {
            // A thousand seeds leave tens of thousands of probes otherwise, and the kit's shutdown outlasts its limit.
            probe.stop();
        }
    }

    public AddressSpaceActor.CommitResult commit(AddressSpaceActor.RegionChange... changes) {
        return ask(AddressSpaceActor.CommitResult.class, r -> new AddressSpaceActor.Commit(List.of(changes), r),
                space);
    }

    public VfioGroupActor.AttachResult attach(String group, String container) {
        return ask(VfioGroupActor.AttachResult.class, r -> new VfioGroupActor.Attach(containers.get(container),
                container, r), groups.get(group));
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
        kit.stop(ref, TIMEOUT);
    }

    /** Stop a container and wait until it is gone. */
    public void stopContainer(String name) {
        kit.stop(containers.remove(name), TIMEOUT);
    }

    /**
     * Invariants 1, 2 and 3 (and 6 for pins) at a quiescent point: no discard touched pinned memory; the inhibitor
     * count equals the live attached non-compatible groups; every container with groups maps exactly the RAM and
     * ROM sections of the view, and one without groups maps and pins nothing.
     */
    public void assertInvariants(String when) {
        assertEquals(List.of(), pins.violations(), "invariant 1 (no discard under pin) " + when);
        int expectedInhibitors = 0;
        Map<String, List<String>> attachedByContainer = new LinkedHashMap<>();
        for (String group : groups.keySet()) {
            VfioGroupActor.State state = groupState(group);
            if (state.container().isPresent()) {
                attachedByContainer.computeIfAbsent(state.container().get(), c -> new ArrayList<>()).add(group);
                if (!compatible.get(group)) {
                    expectedInhibitors++;
                }
            }
            assertEquals(state.container().isPresent() && !compatible.get(group), state.inhibiting(),
                    "group " + group + " inhibits exactly while attached and not compatible " + when);
        }
        BalloonActor.BalloonStatus status = balloonStatus();
        assertEquals(expectedInhibitors, status.inhibitors(), "invariant 2 (exact inhibitor count) " + when
                + ", holders " + status.holders());
        List<DmaMapping> expected = expectedMappings(view().flatView().sections());
        long expectedPins = 0;
        for (Map.Entry<String, ActorRef<VfioContainerActor.Command>> c : containers.entrySet()) {
            VfioContainerActor.State state = containerState(c.getKey());
            List<String> attached = attachedByContainer.getOrDefault(c.getKey(), List.of());
            assertEquals(attached.stream().sorted().toList(), state.groups().stream().sorted().toList(),
                    "container " + c.getKey() + " knows exactly its attached groups " + when);
            if (attached.isEmpty()) {
                assertEquals(List.of(), state.mappings(), "container " + c.getKey() + " without groups " + when);
                assertEquals(0, state.pinnedBytes());
            } else {
                List<DmaMapping> mirrored = state.discard() == DiscardMode.COORDINATED
                        ? inBlocks(expected, blockSize, state.releasedBlocks()) : expected;
                assertEquals(mirrored, state.mappings(), "invariant 3 (IOMMU mirrors the flat view) in "
                        + c.getKey() + " " + when);
                expectedPins += mirrored.stream().mapToLong(m -> m.iova().size()).sum();
            }
        }
        // Pins of containers holding only compatible groups are mappings too; the watch counts them all.
        assertEquals(expectedPins, pins.pinnedBytes(), "pinned bytes " + when);
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
