package io.actovisor.actors.balloon;

import io.actovisor.actors.ask.ContextAsk;
import io.actovisor.actors.device.DeviceTimeouts;
import io.actovisor.actors.events.ActovisorEvent;
import io.actovisor.actors.memory.AddressSpaceActor;
import io.actovisor.actors.memory.MemoryListener;
import io.actovisor.actors.discard.DiscardManager;
import io.actovisor.actors.discard.DiscardState;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.HostSpan;
import io.actovisor.memory.RegionKind;
import io.actovisor.memory.Section;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;
import java.util.Map;
import java.util.Objects;
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
 * The host side of a memory balloon.
 *
 * <p>Management sets a {@link SetTarget target}; the guest driver gives frames up ({@link Inflate}) and takes them
 * back ({@link Deflate}). Inflated frames are coalesced into contiguous guest-physical runs, and the balloon asks
 * its {@link DiscardManager} before discarding them: on {@link DiscardManager.DiscardNow} each run becomes one
 * discard of the host memory behind it ({@code MADV_DONTNEED}, or a hole punch for memfd-backed RAM), then the
 * balloon reports {@link DiscardManager.DiscardDone}; on {@link DiscardManager.Refused} (a VFIO device has the pages
 * pinned) the guest still gives the pages up but the host does not reclaim them, and the skipped discard is counted
 * and published as {@link ActovisorEvent.DiscardSkipped}. Without an answer in time nothing is discarded. While a
 * decision is pending every other command waits, so no frame is deflated before its discard has run. An inflate
 * from the virtio-balloon device ({@link Inflate#deferDiscard()}) whose discard the manager grants while nothing is
 * registered with it is answered first and discarded by the balloon's {@link DiscardWorker} on its own thread; a
 * deflate, the removal of guest RAM, a status request and {@link Flush} wait for that queue.
 *
 * <p>The balloon never discards on its own authority, except with {@code unsafe-ignore-inhibitor}: then a refused
 * discard runs anyway, loudly ({@link ActovisorEvent.UnsafeDiscard}). Its status reports the manager's holders.
 *
 * <p>The balloon learns where guest RAM lives as a {@link MemoryListener} of its address space. It runs discards
 * itself: spawn it with {@link #DISPATCHER}. A failure while handling one message is logged and that message
 * dropped (resume supervision).
 */
public final class BalloonActor extends AbstractBehavior<BalloonActor.Command> {
    /**
     * The dispatcher balloons run on: {@code actovisor.dispatchers.vm-io}, one thread shared with the VM's
     * virtio-balloon device and discard manager, so a buffer's way device → balloon → discard manager → balloon →
     * device wakes no other thread. The {@code madvise} it runs is blocking work; that dispatcher is not the default.
     */
    public static final DispatcherSelector DISPATCHER = DispatcherSelector.fromConfig("actovisor.dispatchers.vm-io");
    /** Listener priority in the address space: last, after containers and memory slots. */
    public static final int LISTENER_PRIORITY = 100;

    /** What a balloon accepts. */
    public sealed interface Command {
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

    /**
     * The guest driver gives up 4 KiB page frames {@code frames} (guest-physical address / 4096). With
     * {@code deferDiscard} (what the virtio-balloon device sends) the answer may come before the discard has run:
     * a discard the manager allows while nothing is registered with it is queued for the balloon's discard worker,
     * which runs it on a thread of its own, merged with the discards of other inflates queued meanwhile; every
     * later {@link Deflate}, removal of guest RAM, {@link GetStatus} and {@link Flush} waits for the queue first.
     * Without it the discard has run when the answer comes.
     */
    public record Inflate(long[] frames, ActorRef<InflateResult> replyTo, boolean deferDiscard) implements Command {
        public Inflate {
            frames = Objects.requireNonNull(frames, "frames").clone();
        }

        /** An inflate answered only after its discard ran. */
        public Inflate(long[] frames, ActorRef<InflateResult> replyTo) {
            this(frames, replyTo, false);
        }

        /** A copy: the message stays as sent. */
        @Override
        public long[] frames() {
            return frames.clone();
        }
    }

    /**
     * What an inflate did.
     *
     * @param pagesAccepted  frames newly counted as inflated (frames already inflated count once)
     * @param pagesDiscarded pages whose host memory was discarded (with coordinated discard, the whole blocks this
     *                       inflate completed, which may include frames of earlier inflates; for a deferred
     *                       discard, the pages queued for it)
     * @param pagesSkipped   pages not discarded because discards are disabled
     * @param discards       discard calls made (one per coalesced run within a region; for a deferred discard, the
     *                       runs queued, which the worker may merge with others)
     * @param rejected       frames outside guest RAM, refused
     * @param pagesHeld      pages the discard manager holds until their block completes
     */
    public record InflateResult(long pagesAccepted, long pagesDiscarded, long pagesSkipped, int discards,
            List<Long> rejected, long pagesHeld) {
        public InflateResult {
            rejected = List.copyOf(rejected);
        }

        /** A result with nothing held. */
        public InflateResult(long pagesAccepted, long pagesDiscarded, long pagesSkipped, int discards,
                List<Long> rejected) {
            this(pagesAccepted, pagesDiscarded, pagesSkipped, discards, rejected, 0);
        }
    }

    /** The guest driver takes back frames {@code frames}; their contents are whatever the guest finds there. */
    public record Deflate(long[] frames, ActorRef<DeflateResult> replyTo) implements Command {
        public Deflate {
            frames = Objects.requireNonNull(frames, "frames").clone();
        }

        /** A copy: the message stays as sent. */
        @Override
        public long[] frames() {
            return frames.clone();
        }
    }

    /**
     * What a deflate did: frames that were inflated and are not any more, and frames that were not inflated or could
     * not be returned (a discarded block that could not be mapped again).
     */
    public record DeflateResult(long pagesReturned, List<Long> notInflated) {
    }

    /**
     * Free page reporting: the guest reports free chunks {@code chunks} (guest-physical, 4 KiB aligned). They are
     * discarded when the discard manager allows it (no holder of either kind), and skipped otherwise; the guest keeps
     * them either way (they are not inflated).
     */
    public record ReportFree(List<AddressRange> chunks, ActorRef<ReportResult> replyTo) implements Command {
        public ReportFree {
            chunks = List.copyOf(chunks);
            Objects.requireNonNull(replyTo, "replyTo");
        }
    }

    /**
     * What a free page report did.
     *
     * @param bytesDiscarded bytes whose host memory was discarded
     * @param bytesSkipped   bytes not discarded because a holder disables discards (or the manager did not answer)
     * @param rejected       chunks not (wholly) in guest RAM or not 4 KiB aligned, ignored
     * @param holders        the holders that made the manager skip the report (empty when nothing was skipped)
     */
    public record ReportResult(long bytesDiscarded, long bytesSkipped, List<AddressRange> rejected,
            List<String> holders) {
        public ReportResult {
            rejected = List.copyOf(rejected);
            holders = List.copyOf(holders);
        }
    }

    /**
     * Wait until every discard deferred so far has run (a device reset, or a benchmark's clock); the answer says
     * when the last one finished.
     */
    public record Flush(ActorRef<Flushed> replyTo) implements Command {
    }

    /** Every deferred discard has run; the worker's last run ended at {@code lastDiscardNanos} (nanoTime). */
    public record Flushed(long lastDiscardNanos) {
    }

    /**
     * The discard worker ran {@code tickets} queued discards: {@code calls} calls, {@code pages} pages, the last
     * ending at {@code endedNanos} (nanoTime).
     */
    record DeferredDone(int tickets, int calls, long pages, long endedNanos) implements Command {
    }

    /** The discard worker ran everything queued before the balloon's flush. */
    record WorkerFlushed() implements Command {
    }

    /** Ask for the balloon's status. */
    public record GetStatus(ActorRef<BalloonStatus> replyTo) implements Command {
    }

    /**
     * A balloon's status.
     *
     * @param actualBytes    bytes the guest has given up (inflated frames)
     * @param inhibitors     discard holders registered with the discard manager, draining ones included (-1 when
     *                       the manager did not answer)
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

    /** The manager's answer to the discard an inflate asked for, with what the inflate still has to tell. */
    private record Decided(PendingInflate inflate, DiscardManager.Decision decision, Throwable failure)
            implements Command {
    }

    /** The manager's answer to a deflate's reclaim. */
    private record Reclaimed(PendingDeflate deflate, DiscardManager.ReclaimResult result, Throwable failure)
            implements Command {
    }

    /** A deflate waiting for its frames to be mapped again. */
    private record PendingDeflate(ActorRef<DeflateResult> replyTo, long[] frames, List<Long> notInflated) {
    }

    /** The manager's state, for a status request. */
    private record StatusReady(ActorRef<BalloonStatus> replyTo, DiscardState state, Throwable failure)
            implements Command {
    }

    /** An inflate waiting for the manager's decision. */
    private record PendingInflate(ActorRef<InflateResult> replyTo, List<Piece> pieces, long pages,
            List<Long> rejected, boolean deferDiscard) {
    }

    /** The address space answered the balloon's subscription: it has seen the whole current view by now. */
    private record SubscriptionDone(AddressSpaceActor.SubscribeResult result) implements Command {
    }

    /**
     * How long the balloon waits for its discard manager by default ({@code DeviceTimeouts.balloonDecision()});
     * without an answer it discards nothing.
     */
    static final java.time.Duration DECISION_TIMEOUT = DeviceTimeouts.DEFAULT.balloonDecision();
    /**
     * How long a deflate waits for its blocks to be mapped again: longer than the manager's remap attempts, shorter
     * than the virtio device's wait on the balloon ({@code DeviceTimeouts.balloonReclaim()}, by default).
     */
    static final java.time.Duration RECLAIM_TIMEOUT = DeviceTimeouts.DEFAULT.balloonReclaim();

    /** Commands that arrive before the first view; more than this while subscribing is a runaway sender. */
    private static final int SUBSCRIBE_STASH = 10_000;

    private final String name;
    private final BalloonSettings settings;
    private final DeviceTimeouts timeouts;
    private final ActorRef<DiscardManager.Command> discardManager;
    private final StashBuffer<Command> stash;
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
    /** Runs the deferred discards (a child on its own thread). */
    private final ActorRef<DiscardWorker.Command> worker;
    /** Deferred discards queued and not reported done by the worker. */
    private int deferred;
    /** When the worker's last run ended (nanoTime), 0 before the first. */
    private long lastDiscardNanos;

    private BalloonActor(ActorContext<Command> context, String name, BalloonSettings settings,
            ActorRef<DiscardManager.Command> discardManager, StashBuffer<Command> stash) {
        super(context);
        this.name = name;
        this.settings = settings;
        this.timeouts = DeviceTimeouts.of(context.getSystem());
        this.discardManager = discardManager;
        this.stash = stash;
        this.worker = context.spawn(DiscardWorker.create(name, discardManager, context.getSelf()), "discard-worker",
                DiscardWorker.DISPATCHER);
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
     * A balloon over the guest RAM of {@code addressSpace} that asks {@code discardManager} before every discard.
     * Wrapped in resume supervision: the inflated frames outlive a failure in one message.
     */
    public static Behavior<Command> create(String name, ActorRef<AddressSpaceActor.Command> addressSpace,
            BalloonSettings settings, ActorRef<DiscardManager.Command> discardManager) {
        return Behaviors.supervise(Behaviors.<Command>withStash(SUBSCRIBE_STASH, stash -> Behaviors.setup(context ->
                new BalloonActor(context, name, settings, discardManager, stash).subscribing(addressSpace, stash))))
                .onFailure(SupervisorStrategy.resume());
    }

    @Override
    public Receive<Command> createReceive() {
        return newReceiveBuilder()
                .onMessage(SetTarget.class, this::onSetTarget)
                .onMessage(WatchTarget.class, this::onWatchTarget)
                .onMessage(Inflate.class, this::onInflate)
                .onMessage(Deflate.class, d -> deferred > 0 ? flushFirst(d) : onDeflate(d))
                .onMessage(ReportFree.class, this::onReportFree)
                .onMessage(GetStatus.class, g -> deferred > 0 ? flushFirst(g) : onGetStatus(g))
                .onMessage(StatusReady.class, this::onStatusReady)
                .onMessage(ListenerUpdate.class, u -> deferred > 0 && !u.update().regionDel().isEmpty()
                        ? flushFirst(u) : onListenerUpdate(u))
                .onMessage(Flush.class, f -> {
                    if (deferred > 0) {
                        return flushFirst(f);
                    }
                    f.replyTo().tell(new Flushed(lastDiscardNanos));
                    return this;
                })
                .onMessage(DeferredDone.class, this::onDeferredDone)
                .onMessage(WorkerFlushed.class, w -> this)
                .build();
    }

    private Behavior<Command> onDeferredDone(DeferredDone done) {
        deferred -= done.tickets();
        discards += done.calls();
        pagesDiscarded += done.pages();
        lastDiscardNanos = done.endedNanos();
        return this;
    }

    /**
     * {@code command} must not be overtaken by a queued discard (a deflate gives frames back, a removed region's
     * memory may be unmapped): let the worker run its queue, and handle it (and everything after it) then.
     */
    private Behavior<Command> flushFirst(Command command) {
        stash.stash(command);
        worker.tell(new DiscardWorker.Flush());
        return Behaviors.receive(Command.class)
                .onMessage(DeferredDone.class, done -> {
                    onDeferredDone(done);
                    return Behaviors.same();
                })
                .onMessage(WorkerFlushed.class, flushed -> {
                    return stash.unstashAll(this);
                })
                .onAnyMessage(other -> {
                    stash.stash(other);
                    return Behaviors.same();
                })
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
        PendingInflate pending = new PendingInflate(inflate.replyTo(), pieces, frames.length, List.copyOf(rejected),
                inflate.deferDiscard());
        if (pending.pages() == 0) {
            inflate.replyTo().tell(new InflateResult(0, 0, 0, 0, pending.rejected()));
            return this;
        }
        ContextAsk.ask(getContext(), DiscardManager.Decision.class, discardManager, timeouts.balloonDecision(),
                replyTo -> new DiscardManager.RequestDiscard(getContext().getSelf(),
                        pieces.stream().map(Piece::guest).toList(), pending.pages(), replyTo),
                (decision, failure) -> new Decided(pending, decision, failure));
        return deciding();
    }

    /**
     * Waiting for the manager's decision on one inflate: every other command waits too, so no frame of it can be
     * deflated (and reused by the guest) before its discard has run.
     */
    private Behavior<Command> deciding() {
        return Behaviors.receive(Command.class)
                .onMessage(Decided.class, decided -> {
                    onDecided(decided);
                    return stash.unstashAll(this);
                })
                .onAnyMessage(command -> {
                    stash.stash(command);
                    return Behaviors.same();
                })
                .build();
    }

    private void onDecided(Decided decided) {
        PendingInflate inflate = decided.inflate();
        List<AddressRange> guest = inflate.pieces().stream().map(Piece::guest).toList();
        long pages = inflate.pages();
        long discarded = 0;
        long skipped = 0;
        long heldPages = 0;
        int calls = 0;
        if (decided.decision() instanceof DiscardManager.DiscardNow now && now.deferrable()
                && inflate.deferDiscard()) {
            // Nothing is registered with the manager, and nothing will be told it is until the worker reports
            // DiscardDone: the guest may go on now, the madvise runs on the worker's thread.
            List<Piece> pieces = pieces(now.ranges());
            long queuedPages = pieces.stream().mapToLong(p -> p.guest().size() / FrameRuns.FRAME_SIZE).sum();
            worker.tell(new DiscardWorker.Queue(now.ticket(), pieces.stream().map(Piece::host).toList(),
                    queuedPages));
            deferred++;
            calls = pieces.size();
            discarded = queuedPages;
            heldPages = Math.max(0, pages - queuedPages);
        } else if (decided.decision() instanceof DiscardManager.DiscardNow now) {
            long done = 0;
            try {
                // The manager may add frames it held before (a block this inflate completed).
                for (Piece piece : pieces(now.ranges())) {
                    piece.host().discard();
                    calls++;
                    done += piece.guest().size() / FrameRuns.FRAME_SIZE;
                }
            } finally {
                discardManager.tell(new DiscardManager.DiscardDone(now.ticket(), done));
                discards += calls;
                pagesDiscarded += done;
            }
            discarded = done;
            heldPages = Math.max(0, pages - done);
        } else if (decided.decision() instanceof DiscardManager.Held) {
            heldPages = pages;
        } else {
            List<String> holders;
            if (decided.decision() instanceof DiscardManager.Refused refused) {
                holders = refused.holders();
            } else {
                holders = List.of("the discard manager did not answer: " + decided.failure().getMessage());
            }
            if (decided.decision() instanceof DiscardManager.Refused && settings.unsafeIgnoreInhibitor()) {
                for (Piece piece : inflate.pieces()) {
                    piece.host().discard();
                    calls++;
                }
                discarded = pages;
                discards += calls;
                pagesDiscarded += pages;
                unsafeDiscards += calls;
                getContext().getLog().warn("Balloon {} discarded {} pages pinned for {} because "
                        + "unsafe-ignore-inhibitor is set: those devices now see stale memory", name, pages, holders);
                ActovisorEvent.publish(getContext().getSystem(), new ActovisorEvent.UnsafeDiscard(name, guest, pages,
                        holders));
            } else {
                if (decided.decision() == null) {
                    getContext().getLog().error("Balloon {} skips the discard of {} pages: {}", name, pages,
                            holders.get(0));
                }
                skipped = pages;
                skippedDiscards += inflate.pieces().size();
                pagesSkipped += pages;
                ActovisorEvent.publish(getContext().getSystem(), new ActovisorEvent.DiscardSkipped(name, guest, pages,
                        holders));
            }
        }
        publishChanged();
        inflate.replyTo().tell(new InflateResult(pages, discarded, skipped, calls, inflate.rejected(), heldPages));
    }

    private Behavior<Command> onDeflate(Deflate deflate) {
        long returned = 0;
        List<Long> notInflated = new ArrayList<>();
        long[] taken = new long[deflate.frames().length];
        for (long frame : deflate.frames()) {
            if (frame >= 0 && frame <= Integer.MAX_VALUE && inflated.get((int) frame)) {
                inflated.clear((int) frame);
                taken[(int) returned++] = frame;
            } else {
                notInflated.add(frame);
            }
        }
        if (returned == 0) {
            deflate.replyTo().tell(new DeflateResult(0, List.copyOf(notInflated)));
            return this;
        }
        publishChanged();
        long[] frames = java.util.Arrays.copyOf(taken, (int) returned);
        PendingDeflate pending = new PendingDeflate(deflate.replyTo(), frames, List.copyOf(notInflated));
        // A discarded block the frames touch is mapped again in every coordinated container before the answer.
        ContextAsk.ask(getContext(), DiscardManager.ReclaimResult.class, discardManager, timeouts.balloonReclaim(),
                replyTo -> new DiscardManager.Reclaim(FrameRuns.coalesce(frames), replyTo),
                (result, failure) -> new Reclaimed(pending, result, failure));
        return reclaiming();
    }

    /** Waiting for the manager to map again what a deflate takes back: every other command waits too. */
    private Behavior<Command> reclaiming() {
        return Behaviors.receive(Command.class)
                .onMessage(Reclaimed.class, reclaimed -> {
                    onReclaimed(reclaimed);
                    return stash.unstashAll(this);
                })
                .onAnyMessage(command -> {
                    stash.stash(command);
                    return Behaviors.same();
                })
                .build();
    }

    private void onReclaimed(Reclaimed reclaimed) {
        PendingDeflate deflate = reclaimed.deflate();
        if (reclaimed.result() instanceof DiscardManager.Reclaimed) {
            deflate.replyTo().tell(new DeflateResult(deflate.frames().length, deflate.notInflated()));
            return;
        }
        String reason = reclaimed.result() instanceof DiscardManager.ReclaimFailed failed ? failed.reason()
                : "the discard manager did not answer: " + reclaimed.failure().getMessage();
        // Not mapped again: the frames stay in the balloon, and the guest is not told it may use them.
        for (long frame : deflate.frames()) {
            inflated.set((int) frame);
        }
        getContext().getLog().error("Balloon {} keeps {} deflated frames: {}", name, deflate.frames().length, reason);
        publishChanged();
        List<Long> refused = new ArrayList<>(deflate.notInflated());
        for (long frame : deflate.frames()) {
            refused.add(frame);
        }
        deflate.replyTo().tell(new DeflateResult(0, refused));
    }

    private Behavior<Command> onGetStatus(GetStatus get) {
        ContextAsk.ask(getContext(), DiscardState.class, discardManager, timeouts.balloonDecision(),
                DiscardManager.GetState::new,
                (state, failure) -> new StatusReady(get.replyTo(), state, failure));
        return this;
    }

    private Behavior<Command> onStatusReady(StatusReady ready) {
        int holderCount;
        List<String> holders;
        if (ready.state() != null) {
            holderCount = ready.state().uncoordinatedHolders() + ready.state().coordinatedHolders();
            holders = ready.state().holderNames();
        } else {
            holderCount = -1;
            holders = List.of("unknown: the discard manager did not answer (" + ready.failure().getMessage() + ")");
        }
        ready.replyTo().tell(new BalloonStatus(name, targetBytes, inflated.cardinality() * FrameRuns.FRAME_SIZE,
                holderCount, holders, discards, pagesDiscarded, skippedDiscards, pagesSkipped, unsafeDiscards,
                settings.unsafeIgnoreInhibitor()));
        return this;
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

    /** The manager's answer to a free page report. */
    private record ReportDecided(ReportFree report, List<Piece> pieces, long bytes, List<AddressRange> rejected,
            DiscardManager.Decision decision, Throwable failure) implements Command {
    }

    private Behavior<Command> onReportFree(ReportFree report) {
        List<AddressRange> accepted = new ArrayList<>();
        List<AddressRange> rejected = new ArrayList<>();
        for (AddressRange chunk : report.chunks()) {
            boolean aligned = chunk.base() % FrameRuns.FRAME_SIZE == 0 && chunk.size() % FrameRuns.FRAME_SIZE == 0;
            Section s = sectionOf(chunk.base());
            if (aligned && chunk.size() > 0 && s != null
                    && chunk.base() + chunk.size() <= s.range().base() + s.range().size()) {
                accepted.add(chunk);
            } else {
                rejected.add(chunk);
            }
        }
        if (!rejected.isEmpty()) {
            getContext().getLog().warn("Balloon {}: the guest reported {} free chunks that are not aligned pages of "
                    + "its RAM (first {}); ignored", name, rejected.size(), rejected.get(0));
        }
        long bytes = accepted.stream().mapToLong(AddressRange::size).sum();
        if (bytes == 0) {
            report.replyTo().tell(new ReportResult(0, 0, rejected, List.of()));
            return this;
        }
        List<Piece> pieces = pieces(accepted);
        ContextAsk.ask(getContext(), DiscardManager.Decision.class, discardManager, DECISION_TIMEOUT,
                replyTo -> new DiscardManager.ReportFreePages(getContext().getSelf(), accepted,
                        bytes / FrameRuns.FRAME_SIZE, replyTo),
                (decision, failure) -> new ReportDecided(report, pieces, bytes, rejected, decision, failure));
        // As for an inflate: nothing else runs until the discard is done.
        return Behaviors.receive(Command.class)
                .onMessage(ReportDecided.class, decided -> {
                    onReportDecided(decided);
                    return stash.unstashAll(this);
                })
                .onAnyMessage(command -> {
                    stash.stash(command);
                    return Behaviors.same();
                })
                .build();
    }

    private void onReportDecided(ReportDecided decided) {
        if (decided.decision() instanceof DiscardManager.DiscardNow now) {
            long done = 0;
            try {
                for (Piece piece : pieces(now.ranges())) {
                    piece.host().discard();
                    done += piece.guest().size();
                }
            } finally {
                discardManager.tell(new DiscardManager.DiscardDone(now.ticket(), done / FrameRuns.FRAME_SIZE));
            }
            decided.report().replyTo().tell(new ReportResult(done, decided.bytes() - done, decided.rejected(),
                    List.of()));
            return;
        }
        // Never unsafe-ignore-inhibitor here: a skipped report costs nothing but host memory.
        List<String> holders = decided.decision() instanceof DiscardManager.Refused refused ? refused.holders()
                : List.of("the discard manager did not answer: " + decided.failure().getMessage());
        getContext().getLog().debug("Balloon {} skips {} reported free bytes: {}", name, decided.bytes(), holders);
        decided.report().replyTo().tell(new ReportResult(0, decided.bytes(), decided.rejected(), holders));
    }

    /** A guest range inside one RAM section, and the host memory behind it. */
    private record Piece(AddressRange guest, HostSpan host) {
    }

    /** Split runs at section boundaries and translate each piece to its host range. */
    private List<Piece> pieces(List<AddressRange> runs) {
        List<Piece> pieces = new ArrayList<>();
        for (AddressRange run : runs) {
            long at = run.base();
            long end = run.base() + run.size();
            while (at < end) {
                Section s = sectionOf(at);
                if (s == null) { // no longer guest RAM (its region was removed): nothing of ours to discard
                    at += FrameRuns.FRAME_SIZE;
                    continue;
                }
                long pieceEnd = Math.min(end, s.range().base() + s.range().size());
                AddressRange guest = AddressRange.of(at, pieceEnd - at);
                pieces.add(new Piece(guest, s.hostSpan(guest)));
                at = pieceEnd;
            }
        }
        return pieces;
    }
}
