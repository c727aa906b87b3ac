package io.actovisor.actors.vfio;

import io.actovisor.actors.discard.DiscardManager;
import io.actovisor.actors.discard.DiscardMode;
import io.actovisor.actors.memory.AddressSpaceActor;
import io.actovisor.actors.memory.MemoryListener;
import io.actovisor.devices.iommu.DmaMapping;
import io.actovisor.devices.iommu.DmaPermissions;
import io.actovisor.devices.iommu.IommuException;
import io.actovisor.devices.iommu.IommuInfo;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.HostAddress;
import io.actovisor.memory.Section;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.OptionalLong;
import java.util.TreeMap;
import java.util.TreeSet;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.DispatcherSelector;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;
import org.apache.pekko.actor.typed.javadsl.StashBuffer;

/**
 * One VFIO container: one IOMMU context shared by the groups attached to it. It has the context opened and
 * subscribes to its {@link AddressSpaceActor} when the first group attaches, and unsubscribes and has the context
 * closed (which unmaps and unpins everything) when the last group leaves, is stopped or crashes (groups are watched).
 *
 * <p>As a {@link MemoryListener} it mirrors the flat view into the IOMMU: for each RAM or ROM section added it
 * aligns the section inward to the IOMMU page size, to be pinned and mapped IOVA (= guest-physical address) to its
 * pages, read-only for ROM and read-only RAM; each section removed is unmapped and unpinned. MMIO and reserved
 * sections are skipped. If the IOMMU refuses a map (overlap, mapping limit, locked-memory limit), what the update did
 * is undone and the update refused, so the whole commit fails with the IOMMU's error.
 *
 * <p>The IOMMU has one owner, the child {@link ContainerDmaActor}: this actor decides what to map (sections,
 * alignment, coordinated blocks, released blocks) and orders every IOMMU effect from it (open, join, leave, close,
 * apply one update, release and restore blocks, report), stashing other messages until the child answers. The
 * child also serves user IOVA maps and the device data path, reached through {@link Dma}. If the child crashes, its
 * {@code PostStop} closes the IOMMU, and this actor answers everything it holds and stops.
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

    /** The IOMMU side answered the order in {@link #pending}. */
    private record IommuAnswered(ContainerDmaActor.OrderReply reply) implements Command {
    }

    /** The IOMMU side stopped (it crashed: the container never stops it while running). */
    private enum IommuSideStopped implements Command {
        INSTANCE
    }

    private enum Ignore implements Command {
        INSTANCE
    }

    private record Attached(String groupId, ActorRef<?> group) {
    }

    /** The one order the container waits for, with what it finishes when the answer comes. */
    private sealed interface Pending permits Opening, Joining, Applying, Leaving, Closing, Releasing, Restoring,
            Reporting, Attaching {
    }

    private record Opening(AttachGroup attach) implements Pending {
    }

    private record Joining(AttachGroup attach) implements Pending {
    }

    private record Applying(MemoryListener.Update update) implements Pending {
    }

    private record Leaving(Attached attached, Optional<DetachGroup> detach) implements Pending {
    }

    /** Closing after the last group left ({@code removed}, answering {@code detach}) or after a failed attach. */
    private record Closing(Optional<Attached> removed, Optional<DetachGroup> detach, Optional<AttachGroup> attach,
            String attachFailure) implements Pending {
    }

    private record Releasing(DiscardManager.ReleaseBlocks request) implements Pending {
    }

    /** Restoring {@code sent}; {@code failed} could not be populated and were not sent. */
    private record Restoring(DiscardManager.RestoreBlocks request, List<AddressRange> sent, List<AddressRange> failed,
            List<String> reasons) implements Pending {
    }

    private record Reporting(GetState get) implements Pending {
    }

    /** The group is joined (and the view mapped, for the first one): the IOMMU's counts for its answer. */
    private record Attaching(AttachGroup attach) implements Pending {
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
    /** The IOMMU side: the one actor that touches the IOMMU. */
    private final ActorRef<ContainerDmaActor.Command> dma;
    private final ActorRef<ContainerDmaActor.OrderReply> orderReplies;
    /** The open IOMMU's geometry; null while the IOMMU is closed. */
    private IommuInfo info;
    private boolean subscribed;
    /** The RAM and ROM sections of the view, by guest base (what a restored block maps again). */
    private final TreeMap<Long, Section> memorySections = new TreeMap<>(Long::compareUnsigned);
    /** Coordinated mode: blocks (by index) unmapped for a discard and not mapped again. */
    private final TreeSet<Long> released = new TreeSet<>();
    /** The attach that is waiting for the subscription (the initial view mapped) to complete. */
    private AttachGroup subscribing;
    /** The order sent to the IOMMU side and not answered yet; everything else waits in the stash meanwhile. */
    private Pending pending;

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
        this.orderReplies = context.messageAdapter(ContainerDmaActor.OrderReply.class, IommuAnswered::new);
        this.dma = context.spawn(ContainerDmaActor.create(name, backend), "dma", DispatcherSelector.sameAsParent());
        context.watchWith(dma, IommuSideStopped.INSTANCE);
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
        Objects.requireNonNull(backend, "backend");
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
                .onMessage(IommuAnswered.class, this::onIommuAnswered)
                .onMessageEquals(IommuSideStopped.INSTANCE, this::onIommuSideStopped)
                .onMessage(Dma.class, this::onDma)
                .onMessage(Describe.class, this::onDescribe)
                .onMessage(Command.class, c -> pending != null, this::stashWhilePending)
                .onMessage(ListenerUpdate.class, this::onListenerUpdate)
                .onMessage(SubscribeReplied.class, this::onSubscribeReplied)
                .onMessage(AttachGroup.class, this::onAttachGroup)
                .onMessage(DetachGroup.class, this::onDetachGroup)
                .onMessage(GroupStopped.class, this::onGroupStopped)
                .onMessage(AwaitGroupGone.class, this::onAwaitGroupGone)
                .onMessage(PinOwnerRequestReceived.class, this::onPinOwnerRequest)
                .onMessage(GetState.class, this::onGetState)
                .onMessageEquals(Ignore.INSTANCE, () -> this)
                .build();
    }

    private Behavior<Command> stashWhilePending(Command command) {
        stash.stash(command);
        return this;
    }

    /** Send the IOMMU side {@code order} and wait (stashing) for its answer, which {@code then} finishes. */
    private Behavior<Command> await(Pending then, ContainerDmaActor.Order order) {
        pending = then;
        dma.tell(order);
        return this;
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
        if (info == null) {
            OptionalLong blockSize = mode == DiscardMode.COORDINATED ? OptionalLong.of(discardBlockSize)
                    : OptionalLong.empty();
            return await(new Opening(attach), new ContainerDmaActor.Open(attach.groupId(), blockSize, orderReplies));
        }
        return await(new Joining(attach), new ContainerDmaActor.Join(attach.groupId(), orderReplies));
    }

    private String attachRefused(AttachGroup attach, String reason) {
        getContext().getLog().warn("Container {} cannot attach group {}: {}", name, attach.groupId(), reason);
        return "container " + name + " cannot attach group " + attach.groupId() + " (" + backend.name() + "): "
                + reason;
    }

    /** The IOMMU is open and has the group: subscribe (the first group) or report the attach. */
    private Behavior<Command> joined(AttachGroup attach) {
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

    /** Ask the IOMMU side for its counts, then {@link #attached}. */
    private Behavior<Command> completeAttach(AttachGroup attach) {
        return await(new Attaching(attach), new ContainerDmaActor.Report(orderReplies));
    }

    private Behavior<Command> attached(AttachGroup attach, ContainerDmaActor.Snapshot snapshot) {
        groups.put(attach.groupId(), new Attached(attach.groupId(), attach.group()));
        getContext().watchWith(attach.group(), new GroupStopped(attach.group()));
        getContext().getLog().debug("Group {} attached to container {} ({} mappings, {} bytes pinned)",
                attach.groupId(), name, snapshot.mappings().size(), snapshot.pinnedBytes());
        attach.replyTo().tell(new GroupAttached(name, attach.groupId(), snapshot.mappings().size()));
        return this;
    }

    private Behavior<Command> onSubscribeReplied(SubscribeReplied replied) {
        AttachGroup attach = subscribing;
        subscribing = null;
        if (replied.result() instanceof AddressSpaceActor.Subscribed) {
            subscribed = true;
            completeAttach(attach);
            return stash.unstashAll(this);
        }
        String reason = ((AddressSpaceActor.SubscribeFailed) replied.result()).reason();
        String failure = "container " + name + " cannot map guest memory for group " + attach.groupId() + ": "
                + reason;
        if (groups.isEmpty()) {
            close(new Closing(Optional.empty(), Optional.empty(), Optional.of(attach), failure));
        } else {
            attach.replyTo().tell(new GroupAttachFailed(name, attach.groupId(), failure));
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
        return removeGroup(attached, Optional.of(detach));
    }

    private Behavior<Command> onGroupStopped(GroupStopped stopped) {
        Optional<Attached> gone = groups.values().stream().filter(a -> a.group().equals(stopped.group()))
                .findFirst();
        if (gone.isEmpty()) {
            return this;
        }
        getContext().getLog().warn("Group {} stopped while attached to container {}; detaching it",
                gone.get().groupId(), name);
        return removeGroup(gone.get(), Optional.empty());
    }

    /** Detach one group; the last one closes the IOMMU. {@code detach} is answered when the IOMMU side is done. */
    private Behavior<Command> removeGroup(Attached attached, Optional<DetachGroup> detach) {
        groups.remove(attached.groupId());
        if (groups.isEmpty()) {
            return close(new Closing(Optional.of(attached), detach, Optional.empty(), ""));
        }
        return await(new Leaving(attached, detach), new ContainerDmaActor.Leave(attached.groupId(), orderReplies));
    }

    /** The group holds nothing in this container any more: tell whoever waits for that. */
    private void groupGone(Attached attached) {
        List<ActorRef<GroupGone>> waiters = goneWaiters.remove(attached.group());
        if (waiters != null) {
            waiters.forEach(w -> w.tell(new GroupGone(name, attached.group())));
        }
        List<ActorRef<DiscardManager.PinsGone>> managers = pinsGoneWaiters.remove(attached.group());
        if (managers != null) {
            managers.forEach(w -> w.tell(new DiscardManager.PinsGone(name, attached.group())));
        }
    }

    /** Unsubscribe, and have the IOMMU side close the IOMMU (unmapping and unpinning everything). */
    private Behavior<Command> close(Closing closing) {
        if (subscribed) {
            ActorRef<AddressSpaceActor.Unsubscribed> ignore = getContext().messageAdapter(
                    AddressSpaceActor.Unsubscribed.class, u -> Ignore.INSTANCE);
            addressSpace.tell(new AddressSpaceActor.Unsubscribe(name, ignore));
            subscribed = false;
        }
        released.clear();
        memorySections.clear();
        if (info == null) {
            return closed(closing, 0);
        }
        info = null;
        return await(closing, new ContainerDmaActor.Close(orderReplies));
    }

    private Behavior<Command> closed(Closing closing, long unpinned) {
        getContext().getLog().info("Container {} closed its IOMMU ({} bytes unpinned)", name, unpinned);
        closing.removed().ifPresent(this::groupGone);
        closing.detach().ifPresent(d -> d.replyTo().tell(new GroupDetached(name, d.groupId(), true)));
        closing.attach().ifPresent(a -> a.replyTo().tell(new GroupAttachFailed(name, a.groupId(),
                closing.attachFailure())));
        return this;
    }

    private Behavior<Command> onIommuAnswered(IommuAnswered answered) {
        Pending done = pending;
        pending = null;
        ContainerDmaActor.OrderReply reply = answered.reply();
        Behavior<Command> next = finish(done, reply);
        return pending == null ? stash.unstashAll(next) : next;
    }

    private Behavior<Command> finish(Pending done, ContainerDmaActor.OrderReply reply) {
        if (done instanceof Opening opening) {
            if (reply instanceof ContainerDmaActor.Opened opened) {
                info = opened.info();
                return joined(opening.attach());
            }
            AttachGroup attach = opening.attach();
            attach.replyTo().tell(new GroupAttachFailed(name, attach.groupId(), attachRefused(attach,
                    failure(reply))));
        } else if (done instanceof Joining joining) {
            if (reply instanceof ContainerDmaActor.Done) {
                return joined(joining.attach());
            }
            AttachGroup attach = joining.attach();
            attach.replyTo().tell(new GroupAttachFailed(name, attach.groupId(), attachRefused(attach,
                    failure(reply))));
        } else if (done instanceof Applying applying) {
            applied(applying.update(), reply);
        } else if (done instanceof Leaving leaving) {
            if (reply instanceof ContainerDmaActor.OrderFailed failed) {
                getContext().getLog().error("Container {} could not detach group {} from its IOMMU: {}", name,
                        leaving.attached().groupId(), failed.reason());
            }
            groupGone(leaving.attached());
            leaving.detach().ifPresent(d -> d.replyTo().tell(new GroupDetached(name, d.groupId(), false)));
        } else if (done instanceof Closing closing) {
            return closed(closing, reply instanceof ContainerDmaActor.Closed c ? c.unpinnedBytes() : 0);
        } else if (done instanceof Releasing releasing) {
            blocksReleased(releasing.request(), (ContainerDmaActor.BlocksOutcome) reply);
        } else if (done instanceof Restoring restoring) {
            blocksRestored(restoring, (ContainerDmaActor.BlocksOutcome) reply);
        } else if (done instanceof Reporting reporting) {
            reporting.get().replyTo().tell(state(snapshot(reply)));
        } else if (done instanceof Attaching attaching) {
            return attached(attaching.attach(), snapshot(reply));
        }
        return this;
    }

    private static ContainerDmaActor.Snapshot snapshot(ContainerDmaActor.OrderReply reply) {
        return reply instanceof ContainerDmaActor.Snapshot s ? s
                : new ContainerDmaActor.Snapshot(List.of(), 0, Optional.empty());
    }

    private static String failure(ContainerDmaActor.OrderReply reply) {
        return reply instanceof ContainerDmaActor.OrderFailed failed ? failed.reason() : "unexpected answer " + reply;
    }

    /**
     * The IOMMU side crashed; its {@code PostStop} closed the IOMMU. Answer the order in flight and everything
     * waiting, then stop: the groups (watching this container) see it stop, and the address space drops it.
     */
    private Behavior<Command> onIommuSideStopped() {
        String reason = "container " + name + " lost its IOMMU side (it stopped; the IOMMU is closed)";
        getContext().getLog().error("{}; the container stops", reason);
        Pending lost = pending;
        pending = null;
        if (lost instanceof Opening o) {
            answerStopped(o.attach(), reason);
        } else if (lost instanceof Joining j) {
            answerStopped(j.attach(), reason);
        } else if (lost instanceof Applying a) {
            answerStopped(new ListenerUpdate(a.update()), reason);
        } else if (lost instanceof Leaving l) {
            groupGone(l.attached());
            l.detach().ifPresent(d -> d.replyTo().tell(new GroupDetached(name, d.groupId(), true)));
        } else if (lost instanceof Closing c) {
            closed(c, 0);
        } else if (lost instanceof Releasing r) {
            answerStopped(new PinOwnerRequestReceived(r.request()), reason);
        } else if (lost instanceof Restoring r) {
            answerStopped(new PinOwnerRequestReceived(r.request()), reason);
        } else if (lost instanceof Reporting r) {
            answerStopped(r.get(), reason);
        } else if (lost instanceof Attaching a) {
            answerStopped(a.attach(), reason);
        }
        if (subscribing != null) {
            answerStopped(subscribing, reason);
            subscribing = null;
        }
        List.copyOf(groups.values()).forEach(this::groupGone);
        stash.unstashAll(Behaviors.receive(Command.class).onMessage(Command.class, command -> {
            answerStopped(command, reason);
            return Behaviors.same();
        }).build());
        return Behaviors.stopped();
    }

    /** Answer {@code command} as a container whose IOMMU side stopped (so whose IOMMU is closed). */
    private void answerStopped(Command command, String reason) {
        if (command instanceof AttachGroup a) {
            a.replyTo().tell(new GroupAttachFailed(name, a.groupId(), reason));
        } else if (command instanceof DetachGroup d) {
            d.replyTo().tell(groups.containsKey(d.groupId()) ? new GroupDetached(name, d.groupId(), true)
                    : new GroupDetachFailed(name, d.groupId(), "group " + d.groupId()
                    + " is not attached to container " + name));
        } else if (command instanceof ListenerUpdate u) {
            u.update().replyTo().tell(new MemoryListener.Refused(u.update().commitId(), name, reason));
        } else if (command instanceof PinOwnerRequestReceived p) {
            if (p.request() instanceof DiscardManager.ReleaseBlocks release) {
                release.replyTo().tell(new DiscardManager.BlocksFailed(name, release.blocks(), reason));
            } else if (p.request() instanceof DiscardManager.RestoreBlocks restore) {
                restore.replyTo().tell(new DiscardManager.BlocksFailed(name, restore.blocks(), reason));
            } else if (p.request() instanceof DiscardManager.AwaitPinsGone await) {
                await.replyTo().tell(new DiscardManager.PinsGone(name, await.holder()));
            }
        } else if (command instanceof AwaitGroupGone await) {
            await.replyTo().tell(new GroupGone(name, await.group()));
        } else if (command instanceof GetState get) {
            get.replyTo().tell(state(new ContainerDmaActor.Snapshot(List.of(), 0, Optional.empty())));
        } else if (command instanceof Dma dma) {
            ContainerDmaActor.fail(dma.request(), new ContainerDmaActor.DmaFailed(reason,
                    Optional.of(IommuException.Kind.CLOSED)));
        } else if (command instanceof Describe describe) {
            describe.replyTo().tell(new Description(name, mode, pinOwner));
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
            return releaseBlocks(release);
        } else if (received.request() instanceof DiscardManager.RestoreBlocks restore) {
            return restoreBlocks(restore);
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
    private Behavior<Command> releaseBlocks(DiscardManager.ReleaseBlocks release) {
        if (mode != DiscardMode.COORDINATED) {
            release.replyTo().tell(new DiscardManager.BlocksFailed(name, release.blocks(), "container " + name
                    + " has discard = " + mode.configName() + " and does not unmap blocks on request"));
            return this;
        }
        if (info == null) {
            release.replyTo().tell(new DiscardManager.BlocksDone(name));
            return this;
        }
        return await(new Releasing(release), new ContainerDmaActor.Release(release.blocks(), orderReplies));
    }

    private void blocksReleased(DiscardManager.ReleaseBlocks release, ContainerDmaActor.BlocksOutcome outcome) {
        for (AddressRange block : release.blocks()) {
            if (!outcome.failed().contains(block)) {
                released.add(block.base() / discardBlockSize);
            }
        }
        if (outcome.failed().isEmpty()) {
            getContext().getLog().debug("Container {} released blocks {}", name, release.blocks());
            release.replyTo().tell(new DiscardManager.BlocksDone(name));
            return;
        }
        getContext().getLog().warn("Container {} could not unmap blocks {}: {}", name, outcome.failed(),
                outcome.reasons());
        release.replyTo().tell(new DiscardManager.BlocksFailed(name, outcome.failed(),
                String.join("; ", outcome.reasons())));
    }

    /** Populate each released block and have it mapped again (the parts of it that RAM and ROM sections cover). */
    private Behavior<Command> restoreBlocks(DiscardManager.RestoreBlocks restore) {
        if (info == null) {
            restore.replyTo().tell(new DiscardManager.BlocksDone(name));
            return this;
        }
        List<ContainerDmaActor.BlockMappings> toMap = new ArrayList<>();
        List<AddressRange> sent = new ArrayList<>();
        List<AddressRange> failed = new ArrayList<>();
        List<String> reasons = new ArrayList<>();
        for (AddressRange block : restore.blocks()) {
            if (!released.contains(block.base() / discardBlockSize)) {
                continue; // mapped here already (this container opened after the discard)
            }
            try {
                List<DmaMapping> mappings = blockMappings(block);
                for (DmaMapping m : mappings) {
                    Section section = memorySections.floorEntry(m.iova().base()).getValue();
                    if (!section.region().readOnly()) {
                        section.hostSpan(m.iova()).populate();
                    }
                }
                toMap.add(new ContainerDmaActor.BlockMappings(block, mappings));
                sent.add(block);
            } catch (RuntimeException e) {
                failed.add(block);
                reasons.add(e.getMessage());
            }
        }
        Restoring restoring = new Restoring(restore, List.copyOf(sent), List.copyOf(failed), List.copyOf(reasons));
        if (toMap.isEmpty()) {
            blocksRestored(restoring, new ContainerDmaActor.BlocksOutcome(List.of(), List.of()));
            return this;
        }
        return await(restoring, new ContainerDmaActor.Restore(toMap, orderReplies));
    }

    private void blocksRestored(Restoring restoring, ContainerDmaActor.BlocksOutcome outcome) {
        for (AddressRange block : restoring.sent()) {
            if (!outcome.failed().contains(block)) {
                released.remove(block.base() / discardBlockSize);
            }
        }
        List<AddressRange> failed = new ArrayList<>(restoring.failed());
        failed.addAll(outcome.failed());
        List<String> reasons = new ArrayList<>(restoring.reasons());
        reasons.addAll(outcome.reasons());
        if (failed.isEmpty()) {
            restoring.request().replyTo().tell(new DiscardManager.BlocksDone(name));
            return;
        }
        getContext().getLog().error("Container {} could not map blocks {} again: {}", name, failed, reasons);
        restoring.request().replyTo().tell(new DiscardManager.BlocksFailed(name, failed, String.join("; ", reasons)));
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

    /** Turn one flat-view update into one {@code Apply} for the IOMMU side, answered when it answers. */
    private Behavior<Command> onListenerUpdate(ListenerUpdate wrapped) {
        MemoryListener.Update update = wrapped.update();
        if (info == null) {
            // Unsubscribed and closed while this update was on its way: there is nothing to mirror.
            update.replyTo().tell(new MemoryListener.Applied(update.commitId(), name));
            return this;
        }
        List<AddressRange> unmap = new ArrayList<>();
        List<DmaMapping> map = new ArrayList<>();
        for (Section section : update.regionDel()) {
            mappingsOf(section).forEach(m -> unmap.add(m.iova()));
        }
        for (Section section : update.regionAdd()) {
            map.addAll(mappingsOf(section));
        }
        OptionalLong perBlock = mode == DiscardMode.COORDINATED ? OptionalLong.of(discardBlockSize)
                : OptionalLong.empty();
        return await(new Applying(update), new ContainerDmaActor.Apply(unmap, map, perBlock, orderReplies));
    }

    private void applied(MemoryListener.Update update, ContainerDmaActor.OrderReply reply) {
        if (!(reply instanceof ContainerDmaActor.Done)) {
            String reason = "container " + name + " (" + backend.name() + ") refused commit " + update.commitId()
                    + ": " + failure(reply);
            getContext().getLog().warn(reason);
            update.replyTo().tell(new MemoryListener.Refused(update.commitId(), name, reason));
            return;
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
        long page = info.minPageSize();
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
        return await(new Reporting(get), new ContainerDmaActor.Report(orderReplies));
    }

    private State state(ContainerDmaActor.Snapshot snapshot) {
        return new State(name, backend.name(), List.copyOf(groups.keySet()), snapshot.mappings(),
                snapshot.pinnedBytes(), subscribed, snapshot.info(), mode,
                released.stream().map(b -> AddressRange.of(b * discardBlockSize, discardBlockSize)).toList());
    }
}
