package io.actovisor.actors.vfio;

import io.actovisor.actors.discard.DiscardManager;
import io.actovisor.actors.discard.DiscardMode;
import io.actovisor.actors.memory.AddressSpaceActor;
import io.actovisor.actors.memory.MemoryListener;
import io.actovisor.devices.iommu.DmaMapping;
import io.actovisor.devices.iommu.DmaPermissions;
import io.actovisor.devices.iommu.Iommu;
import io.actovisor.devices.iommu.IommuException;
import io.actovisor.devices.iommu.IommuInfo;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.HostAddress;
import io.actovisor.memory.Section;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.TreeMap;
import java.util.TreeSet;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.DispatcherSelector;
import org.apache.pekko.actor.typed.PostStop;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;
import org.apache.pekko.actor.typed.javadsl.StashBuffer;

/**
 * One VFIO container: one IOMMU context shared by the groups attached to it. It opens the context and subscribes
 * to its {@link AddressSpaceActor} when the first group attaches, and unsubscribes and closes the context (which
 * unmaps and unpins everything) when the last group leaves, is stopped or crashes (groups are watched).
 *
 * <p>As a {@link MemoryListener} it mirrors the flat view into the IOMMU: for each RAM or ROM section added it
 * aligns the section inward to the IOMMU page size, pins the pages and maps IOVA (= guest-physical address) to
 * them, read-only for ROM and read-only RAM; for each section removed it unmaps and unpins. MMIO and reserved
 * sections are skipped. If the IOMMU refuses a map (overlap, mapping limit, locked-memory limit), the container
 * undoes what it did for that update and refuses it, so the whole commit fails with the IOMMU's error.
 *
 * <p>User IOVA maps and the device data path are its child's, {@link ContainerDmaActor}, reached through {@link Dma}:
 * the container hands the child its IOMMU (behind a lock, as backends are single-owner) when the first group
 * attaches and takes it back when the last group leaves.
 *
 * <p>Pinning and mapping block for as long as the kernel takes: spawn it with {@link #DISPATCHER}.
 */
public final class VfioContainerActor extends AbstractBehavior<VfioContainerActor.Command> {
    /** The dispatcher containers run on ({@code actovisor.dispatchers.blocking-io}). */
    public static final DispatcherSelector DISPATCHER =
            DispatcherSelector.fromConfig("actovisor.dispatchers.blocking-io");
    /** Listener priority of containers in their address space: after KVM memory slots. */
    public static final int LISTENER_PRIORITY = 10;

    /** What a container accepts. */
    public sealed interface Command {
    }

    /** Attach the group {@code groupId} (whose actor is {@code group}, watched while attached). */
    public record AttachGroup(String groupId, ActorRef<?> group, ActorRef<AttachResult> replyTo) implements Command {
        public AttachGroup {
            Objects.requireNonNull(groupId, "groupId");
            Objects.requireNonNull(group, "group");
            Objects.requireNonNull(replyTo, "replyTo");
        }
    }

    /** The outcome of {@link AttachGroup}. */
    public sealed interface AttachResult permits GroupAttached, GroupAttachFailed {
    }

    /** The group is attached; guest RAM is mapped ({@code mappings} entries). */
    public record GroupAttached(String container, String groupId, int mappings) implements AttachResult {
    }

    /** The group is not attached; nothing of the attempt remains. */
    public record GroupAttachFailed(String container, String groupId, String reason) implements AttachResult {
    }

    /** Detach the group {@code groupId}; the last group's detach unmaps everything and closes the IOMMU. */
    public record DetachGroup(String groupId, ActorRef<DetachResult> replyTo) implements Command {
    }

    /** The outcome of {@link DetachGroup}. */
    public sealed interface DetachResult permits GroupDetached, GroupDetachFailed {
    }

    /** The group is detached; {@code iommuClosed} when it was the last one. */
    public record GroupDetached(String container, String groupId, boolean iommuClosed) implements DetachResult {
    }

    /** The group was not attached here. */
    public record GroupDetachFailed(String container, String groupId, String reason) implements DetachResult {
    }

    /**
     * Answer {@link GroupGone} once {@code group} is no longer attached (at once if it is not). The discard manager
     * asks the same through {@link DiscardManager.AwaitPinsGone} before it releases a group that stopped.
     */
    public record AwaitGroupGone(ActorRef<?> group, ActorRef<GroupGone> replyTo) implements Command {
    }

    /** {@code group} holds nothing in this container any more. */
    public record GroupGone(String container, ActorRef<?> group) {
    }

    /** Ask the container to {@link Description describe} itself (a group asks this first when it attaches). */
    public record Describe(ActorRef<Description> replyTo) implements Command {
        public Describe {
            Objects.requireNonNull(replyTo, "replyTo");
        }
    }

    /**
     * What a group needs to know about its container before it attaches.
     *
     * @param mode     the container's discard mode
     * @param pinOwner the container as the owner of its groups' pins, for the discard manager
     */
    public record Description(String container, DiscardMode mode, DiscardManager.PinOwner pinOwner) {
    }

    /**
     * A request for the container's DMA side ({@link ContainerDmaActor}: user IOVA maps, device DMA, audits), which
     * the container forwards to that child; the request's own {@code replyTo} gets the answer.
     */
    public record Dma(ContainerDmaActor.Request request) implements Command {
        public Dma {
            Objects.requireNonNull(request, "request");
        }
    }

    /** Ask for the container's state. */
    public record GetState(ActorRef<State> replyTo) implements Command {
    }

    /**
     * A container's state.
     *
     * @param groups      attached group ids, in attach order
     * @param mappings    the IOMMU's mappings, empty when closed
     * @param pinnedBytes bytes the IOMMU holds pinned
     * @param info        the IOMMU's info while open
     * @param discard     the container's discard mode
     * @param releasedBlocks blocks a {@code coordinated} container unmapped for a discard and has not mapped again
     */
    public record State(String name, String backend, List<String> groups, List<DmaMapping> mappings,
            long pinnedBytes, boolean subscribed, Optional<IommuInfo> info, DiscardMode discard,
            List<AddressRange> releasedBlocks) {
        public State {
            groups = List.copyOf(groups);
            mappings = List.copyOf(mappings);
            releasedBlocks = List.copyOf(releasedBlocks);
        }
    }

    private record ListenerUpdate(MemoryListener.Update update) implements Command {
    }

    private record SubscribeReplied(AddressSpaceActor.SubscribeResult result) implements Command {
    }

    private record GroupStopped(ActorRef<?> group) implements Command {
    }

    /** The discard manager asks about a holder's pins. */
    private record PinOwnerRequestReceived(DiscardManager.PinOwnerRequest request) implements Command {
    }

    private enum Ignore implements Command {
        INSTANCE
    }

    private record Attached(String groupId, ActorRef<?> group) {
    }

    private static final int STASH_CAPACITY = 10_000;
    /** The default {@code discard-block-size}: 2 MiB. */
    public static final long DEFAULT_DISCARD_BLOCK_SIZE = 2L << 20;

    private final String name;
    private final ActorRef<AddressSpaceActor.Command> addressSpace;
    private final IommuBackend backend;
    private final DiscardMode mode;
    private final long discardBlockSize;
    private final StashBuffer<Command> stash;
    private final DiscardManager.PinOwner pinOwner;
    private final ActorRef<MemoryListener.Update> listenerAdapter;
    private final Map<String, Attached> groups = new LinkedHashMap<>();
    private final Map<ActorRef<?>, List<ActorRef<GroupGone>>> goneWaiters = new LinkedHashMap<>();
    private final Map<ActorRef<?>, List<ActorRef<DiscardManager.PinsGone>>> pinsGoneWaiters = new LinkedHashMap<>();
    private final ActorRef<ContainerDmaActor.Command> dma;
    private GuardedIommu iommu;
    /** The open context of {@link #iommu}, through which further groups join and leave. */
    private IommuBackend.Context context;
    private boolean subscribed;
    /** The RAM and ROM sections of the view, by guest base (what a restored block maps again). */
    private final TreeMap<Long, Section> memorySections = new TreeMap<>(Long::compareUnsigned);
    /** Coordinated mode: blocks (by index) unmapped for a discard and not mapped again. */
    private final TreeSet<Long> released = new TreeSet<>();
    /** The attach that is waiting for the subscription (the initial view mapped) to complete. */
    private AttachGroup subscribing;

    private VfioContainerActor(ActorContext<Command> context, String name,
            ActorRef<AddressSpaceActor.Command> addressSpace, IommuBackend backend, DiscardMode mode,
            long discardBlockSize, StashBuffer<Command> stash) {
        super(context);
        this.name = name;
        this.addressSpace = addressSpace;
        this.backend = backend;
        this.mode = mode;
        this.discardBlockSize = discardBlockSize;
        this.stash = stash;
        this.pinOwner = new DiscardManager.PinOwner(context.getSelf(), context.messageAdapter(
                DiscardManager.PinOwnerRequest.class, PinOwnerRequestReceived::new), discardBlockSize);
        this.listenerAdapter = context.messageAdapter(MemoryListener.Update.class, ListenerUpdate::new);
        this.dma = context.spawn(ContainerDmaActor.create(name), "dma", DispatcherSelector.sameAsParent());
    }

    /**
     * A container called {@code name} (unique among the address space's listeners) mirroring {@code addressSpace}
     * into IOMMU contexts that {@code backend} opens.
     */
    public static Behavior<Command> create(String name, ActorRef<AddressSpaceActor.Command> addressSpace,
            IommuBackend backend) {
        return create(name, addressSpace, backend, DiscardMode.INHIBIT, DEFAULT_DISCARD_BLOCK_SIZE);
    }

    /**
     * As {@link #create(String, ActorRef, IommuBackend)}, in discard mode {@code mode}; a {@code coordinated}
     * container maps guest RAM in blocks of {@code discardBlockSize} bytes (a power of two, at least the IOMMU's
     * minimum page size, checked when the IOMMU opens).
     */
    public static Behavior<Command> create(String name, ActorRef<AddressSpaceActor.Command> addressSpace,
            IommuBackend backend, DiscardMode mode, long discardBlockSize) {
        Objects.requireNonNull(mode, "mode");
        if (discardBlockSize <= 0 || Long.bitCount(discardBlockSize) != 1) {
            throw new IllegalArgumentException("discard-block-size of container " + name + " must be a power of two, "
                    + "was " + discardBlockSize);
        }
        return Behaviors.withStash(STASH_CAPACITY, stash -> Behaviors.setup(context ->
                new VfioContainerActor(context, name, addressSpace, backend, mode, discardBlockSize, stash)));
    }

    @Override
    public Receive<Command> createReceive() {
        return newReceiveBuilder()
                .onMessage(ListenerUpdate.class, this::onListenerUpdate)
                .onMessage(SubscribeReplied.class, this::onSubscribeReplied)
                .onMessage(AttachGroup.class, this::onAttachGroup)
                .onMessage(DetachGroup.class, this::onDetachGroup)
                .onMessage(GroupStopped.class, this::onGroupStopped)
                .onMessage(AwaitGroupGone.class, this::onAwaitGroupGone)
                .onMessage(PinOwnerRequestReceived.class, this::onPinOwnerRequest)
                .onMessage(Describe.class, this::onDescribe)
                .onMessage(Dma.class, this::onDma)
                .onMessage(GetState.class, this::onGetState)
                .onMessageEquals(Ignore.INSTANCE, () -> this)
                .onSignal(PostStop.class, signal -> onPostStop())
                .build();
    }

    private Behavior<Command> onAttachGroup(AttachGroup attach) {
        if (subscribing != null) {
            stash.stash(attach);
            return this;
        }
        if (groups.containsKey(attach.groupId())) {
            attach.replyTo().tell(new GroupAttachFailed(name, attach.groupId(), "group " + attach.groupId()
                    + " is already attached to container " + name));
            return this;
        }
        try {
            if (iommu == null) {
                context = backend.open(attach.groupId());
                iommu = new GuardedIommu(context.iommu(), name);
                dma.tell(new ContainerDmaActor.IommuOpened(iommu));
                checkBlockSize(iommu);
            } else {
                iommu.locked(() -> {
                    context.attach(attach.groupId());
                    return null;
                });
            }
        } catch (RuntimeException e) {
            getContext().getLog().warn("Container {} cannot attach group {}: {}", name, attach.groupId(),
                    e.getMessage());
            attach.replyTo().tell(new GroupAttachFailed(name, attach.groupId(), "container " + name
                    + " cannot attach group " + attach.groupId() + " (" + backend.name() + "): " + e.getMessage()));
            closeIfUnused();
            return this;
        }
        if (!subscribed) {
            subscribing = attach;
            ActorRef<AddressSpaceActor.SubscribeResult> replyTo =
                    getContext().messageAdapter(AddressSpaceActor.SubscribeResult.class, SubscribeReplied::new);
            addressSpace.tell(new AddressSpaceActor.Subscribe(name, LISTENER_PRIORITY, listenerAdapter,
                    getContext().getSelf(), replyTo));
            return this;
        }
        return completeAttach(attach);
    }

    /** A coordinated container unmaps whole blocks: a block smaller than an IOMMU page cannot be unmapped alone. */
    private void checkBlockSize(Iommu opened) {
        long page = opened.info().minPageSize();
        if (mode == DiscardMode.COORDINATED && discardBlockSize < page) {
            throw new IllegalArgumentException("discard-block-size " + discardBlockSize + " is smaller than the "
                    + "IOMMU's minimum page size " + page);
        }
    }

    private Behavior<Command> completeAttach(AttachGroup attach) {
        groups.put(attach.groupId(), new Attached(attach.groupId(), attach.group()));
        getContext().watchWith(attach.group(), new GroupStopped(attach.group()));
        getContext().getLog().debug("Group {} attached to container {} ({} mappings, {} bytes pinned)",
                attach.groupId(), name, iommu.mappings().size(), iommu.pinnedBytes());
        attach.replyTo().tell(new GroupAttached(name, attach.groupId(), iommu.mappings().size()));
        return this;
    }

    private Behavior<Command> onSubscribeReplied(SubscribeReplied replied) {
        AttachGroup attach = subscribing;
        subscribing = null;
        if (replied.result() instanceof AddressSpaceActor.Subscribed) {
            subscribed = true;
            completeAttach(attach);
        } else {
            String reason = ((AddressSpaceActor.SubscribeFailed) replied.result()).reason();
            attach.replyTo().tell(new GroupAttachFailed(name, attach.groupId(), "container " + name
                    + " cannot map guest memory for group " + attach.groupId() + ": " + reason));
            closeIfUnused();
        }
        return stash.unstashAll(this);
    }

    private Behavior<Command> onDetachGroup(DetachGroup detach) {
        if (subscribing != null) {
            stash.stash(detach);
            return this;
        }
        Attached attached = groups.get(detach.groupId());
        if (attached == null) {
            detach.replyTo().tell(new GroupDetachFailed(name, detach.groupId(), "group " + detach.groupId()
                    + " is not attached to container " + name));
            return this;
        }
        getContext().unwatch(attached.group());
        boolean closed = removeGroup(attached);
        detach.replyTo().tell(new GroupDetached(name, detach.groupId(), closed));
        return this;
    }

    private Behavior<Command> onGroupStopped(GroupStopped stopped) {
        groups.values().stream().filter(a -> a.group().equals(stopped.group())).findFirst().ifPresent(attached -> {
            getContext().getLog().warn("Group {} stopped while attached to container {}; detaching it", attached
                    .groupId(), name);
            removeGroup(attached);
        });
        return this;
    }

    /** Detach one group; the last one closes the IOMMU. Returns whether it did. */
    private boolean removeGroup(Attached attached) {
        groups.remove(attached.groupId());
        boolean closed = false;
        if (groups.isEmpty()) {
            closeIommu();
            closed = true;
        } else {
            try {
                iommu.locked(() -> {
                    context.detach(attached.groupId());
                    return null;
                });
            } catch (RuntimeException e) {
                getContext().getLog().error("Container {} could not detach group {} from its IOMMU: {}", name,
                        attached.groupId(), e.getMessage());
            }
        }
        List<ActorRef<GroupGone>> waiters = goneWaiters.remove(attached.group());
        if (waiters != null) {
            waiters.forEach(w -> w.tell(new GroupGone(name, attached.group())));
        }
        List<ActorRef<DiscardManager.PinsGone>> managers = pinsGoneWaiters.remove(attached.group());
        if (managers != null) {
            managers.forEach(w -> w.tell(new DiscardManager.PinsGone(name, attached.group())));
        }
        return closed;
    }

    private void closeIfUnused() {
        if (groups.isEmpty() && subscribing == null) {
            closeIommu();
        }
    }

    private void closeIommu() {
        if (subscribed) {
            ActorRef<AddressSpaceActor.Unsubscribed> ignore = getContext().messageAdapter(
                    AddressSpaceActor.Unsubscribed.class, u -> Ignore.INSTANCE);
            addressSpace.tell(new AddressSpaceActor.Unsubscribe(name, ignore));
            subscribed = false;
        }
        released.clear();
        if (iommu != null) {
            long pinned = iommu.pinnedBytes();
            iommu.close();
            dma.tell(ContainerDmaActor.IommuClosed.INSTANCE);
            iommu = null;
            context = null;
            getContext().getLog().info("Container {} closed its IOMMU ({} bytes unpinned)", name, pinned);
        }
    }

    private Behavior<Command> onAwaitGroupGone(AwaitGroupGone await) {
        boolean attached = groups.values().stream().anyMatch(a -> a.group().equals(await.group()));
        if (attached) {
            goneWaiters.computeIfAbsent(await.group(), g -> new ArrayList<>()).add(await.replyTo());
        } else {
            await.replyTo().tell(new GroupGone(name, await.group()));
        }
        return this;
    }

    private Behavior<Command> onPinOwnerRequest(PinOwnerRequestReceived received) {
        if (received.request() instanceof DiscardManager.ReleaseBlocks release) {
            release.replyTo().tell(releaseBlocks(release.blocks()));
        } else if (received.request() instanceof DiscardManager.RestoreBlocks restore) {
            restore.replyTo().tell(restoreBlocks(restore.blocks()));
        } else if (received.request() instanceof DiscardManager.AwaitPinsGone await) {
            boolean attached = groups.values().stream().anyMatch(a -> a.group().equals(await.holder()));
            if (attached) {
                pinsGoneWaiters.computeIfAbsent(await.holder(), g -> new ArrayList<>()).add(await.replyTo());
            } else {
                await.replyTo().tell(new DiscardManager.PinsGone(name, await.holder()));
            }
        }
        return this;
    }

    /** Unmap (and so unpin) every mapping inside each block; a closed IOMMU maps nothing, so there is nothing to do. */
    private DiscardManager.BlockReply releaseBlocks(List<AddressRange> blocks) {
        if (mode != DiscardMode.COORDINATED) {
            return new DiscardManager.BlocksFailed(name, blocks, "container " + name + " has discard = "
                    + mode.configName() + " and does not unmap blocks on request");
        }
        if (iommu == null) {
            return new DiscardManager.BlocksDone(name);
        }
        List<AddressRange> failed = new ArrayList<>();
        List<String> reasons = new ArrayList<>();
        for (AddressRange block : blocks) {
            try {
                iommu.unmap(block);
                released.add(block.base() / discardBlockSize);
            } catch (RuntimeException e) {
                failed.add(block);
                reasons.add(e.getMessage());
            }
        }
        if (failed.isEmpty()) {
            getContext().getLog().debug("Container {} released blocks {}", name, blocks);
            return new DiscardManager.BlocksDone(name);
        }
        getContext().getLog().warn("Container {} could not unmap blocks {}: {}", name, failed, reasons);
        return new DiscardManager.BlocksFailed(name, failed, String.join("; ", reasons));
    }

    /** Populate each released block and map it again (the parts of it that RAM and ROM sections cover). */
    private DiscardManager.BlockReply restoreBlocks(List<AddressRange> blocks) {
        if (iommu == null) {
            return new DiscardManager.BlocksDone(name);
        }
        List<AddressRange> failed = new ArrayList<>();
        List<String> reasons = new ArrayList<>();
        for (AddressRange block : blocks) {
            long index = block.base() / discardBlockSize;
            if (!released.contains(index)) {
                continue; // mapped here already (this container opened after the discard)
            }
            List<DmaMapping> done = new ArrayList<>();
            try {
                for (DmaMapping m : blockMappings(block)) {
                    Section section = memorySections.floorEntry(m.iova().base()).getValue();
                    if (!section.region().readOnly()) {
                        section.hostSpan(m.iova()).populate();
                    }
                    iommu.map(m.iova(), m.host(), m.permissions());
                    done.add(m);
                }
                released.remove(index);
            } catch (RuntimeException e) {
                done.forEach(m -> iommu.unmap(m.iova()));
                failed.add(block);
                reasons.add(e.getMessage());
            }
        }
        if (failed.isEmpty()) {
            return new DiscardManager.BlocksDone(name);
        }
        getContext().getLog().error("Container {} could not map blocks {} again: {}", name, failed, reasons);
        return new DiscardManager.BlocksFailed(name, failed, String.join("; ", reasons));
    }

    /** The mappings that mirror the view inside {@code block}, released or not. */
    private List<DmaMapping> blockMappings(AddressRange block) {
        List<DmaMapping> out = new ArrayList<>();
        for (Section section : memorySections.values()) {
            for (DmaMapping m : alignedMappings(section)) {
                if (block.contains(m.iova())) {
                    out.add(m);
                }
            }
        }
        return out;
    }

    private Behavior<Command> onDescribe(Describe describe) {
        describe.replyTo().tell(new Description(name, mode, pinOwner));
        return this;
    }

    private Behavior<Command> onListenerUpdate(ListenerUpdate wrapped) {
        MemoryListener.Update update = wrapped.update();
        if (iommu == null) {
            // Unsubscribed and closed while this update was on its way: there is nothing to mirror.
            update.replyTo().tell(new MemoryListener.Applied(update.commitId(), name));
            return this;
        }
        List<DmaMapping> unmapped = new ArrayList<>();
        List<DmaMapping> mapped = new ArrayList<>();
        try {
            checkMappingLimit(update);
            for (Section section : update.regionDel()) {
                for (DmaMapping m : mappingsOf(section)) {
                    unmapped.addAll(iommu.unmap(m.iova()));
                }
            }
            for (Section section : update.regionAdd()) {
                for (DmaMapping m : mappingsOf(section)) {
                    iommu.map(m.iova(), m.host(), m.permissions());
                    mapped.add(m);
                }
            }
        } catch (RuntimeException e) {
            undo(mapped, unmapped);
            String reason = "container " + name + " (" + backend.name() + ") refused commit " + update.commitId()
                    + ": " + e.getMessage();
            getContext().getLog().warn(reason);
            update.replyTo().tell(new MemoryListener.Refused(update.commitId(), name, reason));
            return this;
        }
        for (Section section : update.regionDel()) {
            memorySections.remove(section.range().base(), section);
        }
        for (Section section : update.regionAdd()) {
            if (section.kind().isMemory()) {
                memorySections.put(section.range().base(), section);
            }
        }
        update.replyTo().tell(new MemoryListener.Applied(update.commitId(), name));
        return this;
    }

    /**
     * A coordinated container needs one mapping per block, so type1's {@code dma_entry_limit} counts blocks: refuse
     * an update that would need more before anything is pinned, naming both numbers. (Other modes map a section as
     * one mapping; there the IOMMU's own refusal, mid-update and undone, says it.)
     */
    private void checkMappingLimit(MemoryListener.Update update) {
        if (mode != DiscardMode.COORDINATED) {
            return;
        }
        long needed = iommu.mappings().size();
        for (Section section : update.regionDel()) {
            needed -= mappingsOf(section).size();
        }
        for (Section section : update.regionAdd()) {
            needed += mappingsOf(section).size();
        }
        int limit = iommu.info().maxMappings();
        if (needed > limit) {
            throw new IommuException(IommuException.Kind.LIMIT, null, "guest memory needs " + needed
                    + " IOMMU mappings (one per discard-block-size block of " + discardBlockSize + " bytes) but the "
                    + iommu.backend() + " IOMMU accepts at most " + limit
                    + (iommu.backend().equals("vfio-type1") ? " (type1's dma_entry_limit, see "
                    + "/sys/module/vfio_iommu_type1/parameters/dma_entry_limit)" : ""));
        }
    }

    /** Undo a partly applied update: unmap what it mapped, map again what it unmapped. */
    private void undo(List<DmaMapping> mapped, List<DmaMapping> unmapped) {
        for (int i = mapped.size() - 1; i >= 0; i--) {
            iommu.unmap(mapped.get(i).iova());
        }
        for (DmaMapping m : unmapped) {
            iommu.map(m.iova(), m.host(), m.permissions());
        }
    }

    /**
     * The mappings that mirror {@code section} now: one per section, or for a coordinated container one per block
     * (blocks are aligned in guest-physical space), leaving out released blocks.
     */
    private List<DmaMapping> mappingsOf(Section section) {
        return alignedMappings(section).stream()
                .filter(m -> mode != DiscardMode.COORDINATED || !released.contains(m.iova().base() / discardBlockSize))
                .toList();
    }

    private List<DmaMapping> alignedMappings(Section section) {
        Optional<DmaMapping> whole = mappingOf(section);
        if (whole.isEmpty() || mode != DiscardMode.COORDINATED) {
            return whole.stream().toList();
        }
        DmaMapping m = whole.get();
        List<DmaMapping> blocks = new ArrayList<>();
        long end = m.iova().base() + m.iova().size();
        for (long at = m.iova().base(); at < end; ) {
            long next = Math.min(end, (at / discardBlockSize + 1) * discardBlockSize);
            blocks.add(new DmaMapping(AddressRange.of(at, next - at), m.host().checkedAdd(at - m.iova().base()),
                    m.permissions()));
            at = next;
        }
        return blocks;
    }

    /** The mapping that mirrors {@code section}: RAM and ROM only, aligned inward to the IOMMU page size. */
    private Optional<DmaMapping> mappingOf(Section section) {
        if (!section.kind().isMemory()) {
            return Optional.empty();
        }
        long page = iommu.info().minPageSize();
        Optional<AddressRange> aligned = section.range().alignInward(page);
        if (aligned.isEmpty()) {
            return Optional.empty();
        }
        AddressRange iova = aligned.get();
        HostAddress host = section.hostBase().orElseThrow().checkedAdd(iova.base() - section.range().base());
        DmaPermissions permissions = section.region().readOnly() ? DmaPermissions.READ : DmaPermissions.READ_WRITE;
        return Optional.of(new DmaMapping(iova, host, permissions));
    }

    private Behavior<Command> onDma(Dma request) {
        dma.tell(request.request());
        return this;
    }

    private Behavior<Command> onGetState(GetState get) {
        get.replyTo().tell(new State(name, backend.name(), List.copyOf(groups.keySet()),
                iommu == null ? List.of() : iommu.mappings(), iommu == null ? 0 : iommu.pinnedBytes(), subscribed,
                iommu == null ? Optional.empty() : Optional.of(iommu.info()), mode,
                released.stream().map(b -> AddressRange.of(b * discardBlockSize, discardBlockSize)).toList()));
        return this;
    }

    private Behavior<Command> onPostStop() {
        if (iommu != null) {
            getContext().getLog().info("Container {} stopped with groups {} attached; closing its IOMMU", name,
                    Collections.unmodifiableSet(groups.keySet()));
            iommu.close();
            iommu = null;
            context = null;
        }
        return this;
    }
}
