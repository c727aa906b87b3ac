package io.actovisor.actors.balloon;

import io.actovisor.actors.events.ActovisorEvent;
import io.actovisor.actors.memory.AddressSpaceActor;
import io.actovisor.actors.memory.MemoryListener;
import io.actovisor.actors.vfio.VfioContainerActor;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.RegionKind;
import io.actovisor.memory.Section;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.Set;
import java.util.TreeMap;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.DispatcherSelector;
import org.apache.pekko.actor.typed.SupervisorStrategy;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;
import org.apache.pekko.actor.typed.javadsl.StashBuffer;

/**
 * The host side of a memory balloon, and the balloon inhibitor.
 *
 * <p>Management sets a {@link SetTarget target}; the guest driver gives frames up ({@link Inflate}) and takes them
 * back ({@link Deflate}). Inflated frames are coalesced into contiguous guest-physical runs, and each run becomes one
 * discard of the host memory behind it ({@code MADV_DONTNEED}, or a hole punch for memfd-backed RAM) — unless the
 * balloon is <b>inhibited</b>: then the guest may still give pages up, but the host does not reclaim them, and the
 * skipped discard is counted and published as {@link ActovisorEvent.DiscardSkipped}.
 *
 * <p>Inhibitors are counted per holder and <b>watched</b>: when a holder stops or crashes its inhibit is released,
 * so the count cannot leak. A holder that named the container pinning its pages ({@code pinOwner}) is released only
 * when that container confirms the holder's pins are gone ({@link VfioContainerActor.AwaitGroupGone}) or the
 * container itself has stopped (its PostStop closed the IOMMU): no discard ever runs while a stopped group's pages
 * are still pinned.
 *
 * <p>The balloon learns where guest RAM lives as a {@link MemoryListener} of its address space. It runs discards
 * itself: spawn it with {@link #DISPATCHER}. A failure while handling one message is logged and that message
 * dropped; the inhibitor table survives (resume supervision).
 */
public final class BalloonActor extends AbstractBehavior<BalloonActor.Command> {
    /** The dispatcher balloons run on ({@code actovisor.dispatchers.blocking-io}). */
    public static final DispatcherSelector DISPATCHER =
            DispatcherSelector.fromConfig("actovisor.dispatchers.blocking-io");
    /** Listener priority in the address space: last, after containers and memory slots. */
    public static final int LISTENER_PRIORITY = 100;

    /** What a balloon accepts. */
    public interface Command {
    }

    /** Set the balloon's target size in bytes (how much memory the guest should give up). */
    public record SetTarget(long bytes, ActorRef<TargetResult> replyTo) implements Command {
    }

    /** The outcome of {@link SetTarget}. */
    public sealed interface TargetResult permits TargetSet, TargetRefused {
    }

    /** The target is set. */
    public record TargetSet(long targetBytes) implements TargetResult {
    }

    /** The target was refused; the message names the value and the limit. */
    public record TargetRefused(long requestedBytes, String reason) implements TargetResult {
    }

    /** Receive target changes (the balloon device, which tells the guest); the current target is sent at once. */
    public record WatchTarget(ActorRef<Long> listener) implements Command {
    }

    /** The guest driver gives up 4 KiB page frames {@code frames} (guest-physical address / 4096). */
    public record Inflate(long[] frames, ActorRef<InflateResult> replyTo) implements Command {
        public Inflate {
            Objects.requireNonNull(frames, "frames");
        }
    }

    /**
     * What an inflate did.
     *
     * @param pagesAccepted  frames newly counted as inflated (frames already inflated count once)
     * @param pagesDiscarded pages whose host memory was discarded
     * @param pagesSkipped   pages not discarded because the balloon is inhibited
     * @param discards       discard calls made (one per coalesced run within a region)
     * @param rejected       frames outside guest RAM, refused
     */
    public record InflateResult(long pagesAccepted, long pagesDiscarded, long pagesSkipped, int discards,
            List<Long> rejected) {
    }

    /** The guest driver takes back frames {@code frames}; their contents are whatever the guest finds there. */
    public record Deflate(long[] frames, ActorRef<DeflateResult> replyTo) implements Command {
        public Deflate {
            Objects.requireNonNull(frames, "frames");
        }
    }

    /** What a deflate did: frames that were inflated and are not any more, and frames that were not inflated. */
    public record DeflateResult(long pagesReturned, List<Long> notInflated) {
    }

    /**
     * Hold an inhibit for {@code holder} (watched).
     *
     * @param holderName how status and events name the holder
     * @param pinOwner   the container holding the pins the inhibit protects, if any
     */
    public record Inhibit(ActorRef<?> holder, String holderName,
            Optional<ActorRef<VfioContainerActor.Command>> pinOwner, ActorRef<InhibitResult> replyTo)
            implements Command {
        public Inhibit {
            Objects.requireNonNull(holder, "holder");
            Objects.requireNonNull(holderName, "holderName");
            Objects.requireNonNull(pinOwner, "pinOwner");
            Objects.requireNonNull(replyTo, "replyTo");
        }
    }

    /** Release the inhibit {@code holder} holds. */
    public record Release(ActorRef<?> holder, ActorRef<InhibitResult> replyTo) implements Command {
    }

    /** The outcome of {@link Inhibit} and {@link Release}. */
    public sealed interface InhibitResult permits InhibitHeld, InhibitReleased, InhibitRefused {
    }

    /** The inhibit is held; {@code count} inhibitors now. */
    public record InhibitHeld(String holderName, int count) implements InhibitResult {
    }

    /** The inhibit is released; {@code count} inhibitors remain. */
    public record InhibitReleased(String holderName, int count) implements InhibitResult {
    }

    /** The request made no sense (a second inhibit by one holder, a release by a non-holder). */
    public record InhibitRefused(String reason) implements InhibitResult {
    }

    /** Ask for the balloon's status. */
    public record GetStatus(ActorRef<BalloonStatus> replyTo) implements Command {
    }

    /**
     * A balloon's status.
     *
     * @param actualBytes    bytes the guest has given up (inflated frames)
     * @param inhibitors     inhibits held, including those of stopped holders still draining
     * @param holders        their names
     * @param discards       discard calls made
     * @param pagesDiscarded pages discarded
     * @param skippedDiscards discards skipped because inhibited
     * @param pagesSkipped   pages not discarded because inhibited
     * @param unsafeDiscards discards made while inhibited because of {@code unsafe-ignore-inhibitor}
     */
    public record BalloonStatus(String name, long targetBytes, long actualBytes, int inhibitors, List<String> holders,
            long discards, long pagesDiscarded, long skippedDiscards, long pagesSkipped, long unsafeDiscards,
            boolean unsafeIgnoreInhibitor) {
    }

    private record ListenerUpdate(MemoryListener.Update update) implements Command {
    }

    private record HolderStopped(ActorRef<?> holder) implements Command {
    }

    private record PinOwnerStopped(ActorRef<?> pinOwner) implements Command {
    }

    private record DrainConfirmed(ActorRef<?> holder) implements Command {
    }

    private record DrainUnconfirmed(ActorRef<?> holder, String reason) implements Command {
    }

    /** The address space answered the balloon's subscription: it has seen the whole current view by now. */
    private record SubscriptionDone(AddressSpaceActor.SubscribeResult result) implements Command {
    }

    /** Commands that arrive before the first view; more than this while subscribing is a runaway sender. */
    private static final int SUBSCRIBE_STASH = 10_000;

    private static final class Holder {
        final ActorRef<?> ref;
        final String name;
        final Optional<ActorRef<VfioContainerActor.Command>> pinOwner;
        boolean draining;

        Holder(ActorRef<?> ref, String name, Optional<ActorRef<VfioContainerActor.Command>> pinOwner) {
            this.ref = ref;
            this.name = name;
            this.pinOwner = pinOwner;
        }
    }

    private final String name;
    private final BalloonSettings settings;
    private final Map<ActorRef<?>, Holder> holders = new LinkedHashMap<>();
    private final Set<ActorRef<?>> watchedPinOwners = new HashSet<>();
    /** Guest RAM sections by guest base address, from the address space. */
    private final TreeMap<Long, Section> ram = new TreeMap<>(Long::compareUnsigned);
    private final BitSet inflated = new BitSet();
    private long targetBytes;
    private final List<ActorRef<Long>> targetWatchers = new ArrayList<>();
    private long discards;
    private long pagesDiscarded;
    private long skippedDiscards;
    private long pagesSkipped;
    private long unsafeDiscards;

    private BalloonActor(ActorContext<Command> context, String name, BalloonSettings settings) {
        super(context);
        this.name = name;
        this.settings = settings;
        if (settings.unsafeIgnoreInhibitor()) {
            context.getLog().warn("Balloon {} starts with unsafe-ignore-inhibitor = true: it will discard pages that "
                    + "VFIO devices have pinned, and those devices will read stale memory", name);
        }
    }

    /**
     * The first behavior: subscribe, apply the initial view, and stash every other command until the address space
     * confirms, so a frame the guest inflates right after start is judged against the RAM it really has.
     */
    private Behavior<Command> subscribing(ActorRef<AddressSpaceActor.Command> addressSpace,
            StashBuffer<Command> stash) {
        ActorContext<Command> context = getContext();
        ActorRef<MemoryListener.Update> listener = context.messageAdapter(MemoryListener.Update.class,
                ListenerUpdate::new);
        ActorRef<AddressSpaceActor.SubscribeResult> subscribed = context.messageAdapter(
                AddressSpaceActor.SubscribeResult.class, SubscriptionDone::new);
        addressSpace.tell(new AddressSpaceActor.Subscribe("balloon:" + name, LISTENER_PRIORITY, listener,
                context.getSelf(), subscribed));
        return Behaviors.receive(Command.class)
                .onMessage(ListenerUpdate.class, update -> {
                    onListenerUpdate(update);
                    return Behaviors.same();
                })
                .onMessage(SubscriptionDone.class, done -> {
                    if (done.result() instanceof AddressSpaceActor.SubscribeFailed failed) {
                        context.getLog().error("Balloon {} could not subscribe to its address space: {}; it knows "
                                + "no guest RAM and rejects every frame", name, failed.reason());
                    }
                    return stash.unstashAll(this);
                })
                .onAnyMessage(command -> {
                    stash.stash(command);
                    return Behaviors.same();
                })
                .build();
    }

    /**
     * A balloon over the guest RAM of {@code addressSpace}. Wrapped in resume supervision: the inhibitor table
     * outlives a failure in one message.
     */
    public static Behavior<Command> create(String name, ActorRef<AddressSpaceActor.Command> addressSpace,
            BalloonSettings settings) {
        return Behaviors.supervise(Behaviors.<Command>withStash(SUBSCRIBE_STASH, stash -> Behaviors.setup(context ->
                new BalloonActor(context, name, settings).subscribing(addressSpace, stash))))
                .onFailure(SupervisorStrategy.resume());
    }

    @Override
    public Receive<Command> createReceive() {
        return newReceiveBuilder()
                .onMessage(SetTarget.class, this::onSetTarget)
                .onMessage(WatchTarget.class, this::onWatchTarget)
                .onMessage(Inflate.class, this::onInflate)
                .onMessage(Deflate.class, this::onDeflate)
                .onMessage(Inhibit.class, this::onInhibit)
                .onMessage(Release.class, this::onRelease)
                .onMessage(HolderStopped.class, this::onHolderStopped)
                .onMessage(PinOwnerStopped.class, this::onPinOwnerStopped)
                .onMessage(DrainConfirmed.class, this::onDrainConfirmed)
                .onMessage(DrainUnconfirmed.class, this::onDrainUnconfirmed)
                .onMessage(GetStatus.class, this::onGetStatus)
                .onMessage(ListenerUpdate.class, this::onListenerUpdate)
                .build();
    }

    private Behavior<Command> onSetTarget(SetTarget set) {
        long ramBytes = ram.values().stream().mapToLong(s -> s.range().size()).sum();
        if (set.bytes() < 0 || set.bytes() % FrameRuns.FRAME_SIZE != 0 || set.bytes() > ramBytes) {
            set.replyTo().tell(new TargetRefused(set.bytes(), "balloon target " + set.bytes() + " bytes must be a "
                    + "multiple of 4096 between 0 and the guest's RAM (" + ramBytes + " bytes)"));
            return this;
        }
        targetBytes = set.bytes();
        targetWatchers.forEach(w -> w.tell(targetBytes));
        publishChanged();
        set.replyTo().tell(new TargetSet(targetBytes));
        return this;
    }

    private Behavior<Command> onWatchTarget(WatchTarget watch) {
        targetWatchers.add(watch.listener());
        watch.listener().tell(targetBytes);
        return this;
    }

    private Behavior<Command> onInflate(Inflate inflate) {
        List<Long> rejected = new ArrayList<>();
        long[] fresh = new long[inflate.frames().length];
        int freshCount = 0;
        Section section = null; // frames of a batch are mostly neighbours: most lookups hit the previous section
        for (long frame : inflate.frames()) {
            Section s = null;
            if (frame >= 0 && frame <= Integer.MAX_VALUE) {
                long gpa = frame * FrameRuns.FRAME_SIZE;
                s = section != null && section.range().contains(gpa) ? section : sectionOf(gpa);
            }
            if (s == null) {
                rejected.add(frame);
            } else {
                section = s;
                if (!inflated.get((int) frame)) {
                    inflated.set((int) frame);
                    fresh[freshCount++] = frame;
                }
            }
        }
        if (!rejected.isEmpty()) {
            getContext().getLog().warn("Balloon {}: the guest inflated {} frames outside its RAM (first {}); "
                    + "ignored", name, rejected.size(), rejected.get(0));
        }
        long[] frames = java.util.Arrays.copyOf(fresh, freshCount);
        List<Piece> pieces = pieces(FrameRuns.coalesce(frames));
        long pages = frames.length;
        long discarded = 0;
        long skipped = 0;
        int calls = 0;
        if (pages > 0) {
            boolean inhibited = !holders.isEmpty();
            if (inhibited && !settings.unsafeIgnoreInhibitor()) {
                skipped = pages;
                skippedDiscards += pieces.size();
                pagesSkipped += pages;
                ActovisorEvent.publish(getContext().getSystem(), new ActovisorEvent.DiscardSkipped(name,
                        pieces.stream().map(Piece::guest).toList(), pages, holderNames()));
            } else {
                for (Piece piece : pieces) {
                    piece.memory().discard(piece.host());
                    calls++;
                }
                discarded = pages;
                discards += calls;
                pagesDiscarded += pages;
                if (inhibited) {
                    unsafeDiscards += calls;
                    getContext().getLog().warn("Balloon {} discarded {} pages pinned for {} because "
                            + "unsafe-ignore-inhibitor is set: those devices now see stale memory", name, pages,
                            holderNames());
                    ActovisorEvent.publish(getContext().getSystem(), new ActovisorEvent.UnsafeDiscard(name,
                            pieces.stream().map(Piece::guest).toList(), pages, holderNames()));
                }
            }
            publishChanged();
        }
        inflate.replyTo().tell(new InflateResult(pages, discarded, skipped, calls, List.copyOf(rejected)));
        return this;
    }

    private Behavior<Command> onDeflate(Deflate deflate) {
        long returned = 0;
        List<Long> notInflated = new ArrayList<>();
        for (long frame : deflate.frames()) {
            if (frame >= 0 && frame <= Integer.MAX_VALUE && inflated.get((int) frame)) {
                inflated.clear((int) frame);
                returned++;
            } else {
                notInflated.add(frame);
            }
        }
        if (returned > 0) {
            publishChanged();
        }
        deflate.replyTo().tell(new DeflateResult(returned, List.copyOf(notInflated)));
        return this;
    }

    private Behavior<Command> onInhibit(Inhibit inhibit) {
        if (holders.containsKey(inhibit.holder())) {
            inhibit.replyTo().tell(new InhibitRefused(inhibit.holderName() + " already holds an inhibit on balloon "
                    + name));
            return this;
        }
        Holder holder = new Holder(inhibit.holder(), inhibit.holderName(), inhibit.pinOwner());
        holders.put(inhibit.holder(), holder);
        getContext().watchWith(inhibit.holder(), new HolderStopped(inhibit.holder()));
        inhibit.pinOwner().ifPresent(owner -> {
            if (watchedPinOwners.add(owner)) {
                getContext().watchWith(owner, new PinOwnerStopped(owner));
            }
        });
        inhibitChanged("inhibit");
        inhibit.replyTo().tell(new InhibitHeld(holder.name, holders.size()));
        return this;
    }

    private Behavior<Command> onRelease(Release release) {
        Holder holder = holders.get(release.holder());
        if (holder == null) {
            release.replyTo().tell(new InhibitRefused(release.holder().path().name() + " holds no inhibit on balloon "
                    + name));
            return this;
        }
        remove(holder, "release");
        release.replyTo().tell(new InhibitReleased(holder.name, holders.size()));
        return this;
    }

    private Behavior<Command> onHolderStopped(HolderStopped stopped) {
        Holder holder = holders.get(stopped.holder());
        if (holder == null) {
            return this;
        }
        if (holder.pinOwner.isEmpty()) {
            getContext().getLog().warn("Inhibitor {} of balloon {} stopped; releasing its inhibit", holder.name, name);
            remove(holder, "holder stopped");
            return this;
        }
        getContext().getLog().warn("Inhibitor {} of balloon {} stopped; releasing its inhibit once its container "
                + "has unpinned", holder.name, name);
        holder.draining = true;
        askDrain(holder);
        return this;
    }

    private void askDrain(Holder holder) {
        ActorRef<VfioContainerActor.Command> owner = holder.pinOwner.orElseThrow();
        getContext().ask(VfioContainerActor.GroupGone.class, owner, settings.drainTimeout(),
                replyTo -> new VfioContainerActor.AwaitGroupGone(holder.ref, replyTo),
                (gone, failure) -> failure == null ? new DrainConfirmed(holder.ref)
                        : new DrainUnconfirmed(holder.ref, failure.getMessage()));
    }

    private Behavior<Command> onDrainConfirmed(DrainConfirmed confirmed) {
        Holder holder = holders.get(confirmed.holder());
        if (holder != null && holder.draining) {
            remove(holder, "holder stopped");
        }
        return this;
    }

    private Behavior<Command> onDrainUnconfirmed(DrainUnconfirmed unconfirmed) {
        Holder holder = holders.get(unconfirmed.holder());
        if (holder != null && holder.draining) {
            getContext().getLog().error("Balloon {}: the container of stopped inhibitor {} has not confirmed its "
                    + "pins are gone ({}); keeping the inhibit and asking again", name, holder.name,
                    unconfirmed.reason());
            askDrain(holder);
        }
        return this;
    }

    private Behavior<Command> onPinOwnerStopped(PinOwnerStopped stopped) {
        watchedPinOwners.remove(stopped.pinOwner());
        // The container's PostStop closed its IOMMU before this arrived: the pins of its stopped groups are gone.
        List<Holder> drained = holders.values().stream()
                .filter(h -> h.draining && h.pinOwner.map(o -> o.equals(stopped.pinOwner())).orElse(false))
                .toList();
        drained.forEach(h -> remove(h, "holder stopped"));
        return this;
    }

    private void remove(Holder holder, String cause) {
        holders.remove(holder.ref);
        getContext().unwatch(holder.ref);
        inhibitChanged(cause);
    }

    private void inhibitChanged(String cause) {
        getContext().getLog().info("Balloon {} inhibitors: {} {} ({})", name, holders.size(), holderNames(), cause);
        ActovisorEvent.publish(getContext().getSystem(), new ActovisorEvent.InhibitChanged(name, holders.size(),
                holderNames(), cause));
    }

    private List<String> holderNames() {
        return holders.values().stream().map(h -> h.draining ? h.name + " (stopped, draining)" : h.name).toList();
    }

    private Behavior<Command> onGetStatus(GetStatus get) {
        get.replyTo().tell(status());
        return this;
    }

    private BalloonStatus status() {
        return new BalloonStatus(name, targetBytes, inflated.cardinality() * FrameRuns.FRAME_SIZE, holders.size(),
                holderNames(), discards, pagesDiscarded, skippedDiscards, pagesSkipped, unsafeDiscards,
                settings.unsafeIgnoreInhibitor());
    }

    private void publishChanged() {
        ActovisorEvent.publish(getContext().getSystem(), new ActovisorEvent.BalloonChanged(name, targetBytes,
                inflated.cardinality() * FrameRuns.FRAME_SIZE));
    }

    private Behavior<Command> onListenerUpdate(ListenerUpdate wrapped) {
        MemoryListener.Update update = wrapped.update();
        for (Section s : update.regionDel()) {
            ram.remove(s.range().base(), s);
        }
        for (Section s : update.regionAdd()) {
            if (s.kind() == RegionKind.RAM && !s.region().readOnly()) {
                ram.put(s.range().base(), s);
            }
        }
        update.replyTo().tell(new MemoryListener.Applied(update.commitId(), "balloon:" + name));
        return this;
    }

    private Section sectionOf(long gpa) {
        Map.Entry<Long, Section> e = ram.floorEntry(gpa);
        return e != null && e.getValue().range().contains(gpa) ? e.getValue() : null;
    }

    /** A guest range inside one RAM section, and the host memory behind it. */
    private record Piece(AddressRange guest, HostMemory memory, AddressRange host) {
    }

    /** Split runs at section boundaries and translate each piece to its host range. */
    private List<Piece> pieces(List<AddressRange> runs) {
        List<Piece> pieces = new ArrayList<>();
        for (AddressRange run : runs) {
            long at = run.base();
            long end = run.base() + run.size();
            while (at < end) {
                Section s = sectionOf(at);
                long pieceEnd = Math.min(end, s.range().base() + s.range().size());
                AddressRange guest = AddressRange.of(at, pieceEnd - at);
                long hostBase = s.hostAddress(new io.actovisor.memory.GuestAddress(at)).value();
                HostMemory memory = s.region().backing().orElseThrow().memory();
                pieces.add(new Piece(guest, memory, AddressRange.of(hostBase, guest.size())));
                at = pieceEnd;
            }
        }
        return pieces;
    }
}
