package io.actovisor.actors.discard;

import io.actovisor.actors.ask.ContextAsk;
import io.actovisor.actors.events.ActovisorEvent;
import io.actovisor.memory.AddressRange;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.Queue;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.DispatcherSelector;
import org.apache.pekko.actor.typed.SupervisorStrategy;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;
import org.apache.pekko.actor.typed.javadsl.StashBuffer;
import org.apache.pekko.actor.typed.javadsl.TimerScheduler;

/**
 * The rules for discarding one VM's RAM, as QEMU keeps them in RAM-block discard management rather than in the
 * balloon. Holders register in one of two kinds: {@link HolderKind#UNCOORDINATED_DISABLED uncoordinated discards
 * disabled} (a VFIO group of an {@code inhibit} container: no discard may run while it is registered) or
 * {@link HolderKind#COORDINATED_REQUIRED coordinated discards required} (a group of a {@code coordinated}
 * container). A requester (the balloon) asks with {@link RequestDiscard} before every discard and gets
 * {@link DiscardNow}, {@link Held} or {@link Refused}.
 *
 * <p>Holders are <b>watched</b>: when one stops or crashes its registration is released, so the counts cannot leak
 * (invariant 2). A holder that named its {@link PinOwner} is released only when that owner confirms the holder's
 * pins are gone ({@link AwaitPinsGone}) or the owner itself has stopped (its PostStop closed the IOMMU): no discard
 * runs while a stopped holder's pages are still pinned.
 *
 * <p>A decision and the discard it allows are one step: while a {@link DiscardNow} is outstanding (until the
 * requester reports {@link DiscardDone}, or stops), a new holder is counted at once (later requests are refused)
 * but its {@link Registered} answer waits, so nothing it would pin can be discarded after it was told to go on.
 *
 * <p>Coordinated discard of blocks needs a container that unmaps blocks on request; no container offers that yet,
 * so a coordinated holder disables discards like an uncoordinated one and is listed in
 * {@link DiscardState#fallbacks()} with that reason. A failure while handling one message is logged and that
 * message dropped; the holder table survives (resume supervision). The manager never blocks; a VM spawns it on
 * {@link #DISPATCHER}, the thread its balloon discards on.
 */
public final class DiscardManager extends AbstractBehavior<DiscardManager.Command> {
    /**
     * The dispatcher a VM's manager runs on: the VM's I/O thread with the balloon it answers
     * ({@code actovisor.dispatchers.vm-io}), so a decision is a hand-off without a thread wake-up.
     */
    public static final DispatcherSelector DISPATCHER = DispatcherSelector.fromConfig("actovisor.dispatchers.vm-io");

    /** What a discard manager accepts. */
    public sealed interface Command permits Register, Unregister, RequestDiscard, ReportFreePages, DiscardDone,
            Reclaim, RestoreAll, SetGuestContract, GetState, HolderStopped, PinOwnerStopped, RequesterStopped, DrainConfirmed,
            DrainUnconfirmed, OwnerReplied, RetryRestore {
    }

    /**
     * How a manager behaves.
     *
     * @param drainTimeout   after a holder with a pin owner stopped, how long to wait for the owner's confirmation
     *                       before asking again
     * @param blockSize      the size of the blocks coordinated containers map guest RAM in (a power of two)
     * @param releaseTimeout how long a coordinated container may take to unmap (or map again) blocks
     * @param remapAttempts  how often a failed remap is tried before the VM is stopped
     * @param remapBackoff   the pause between remap attempts
     */
    public record Settings(Duration drainTimeout, long blockSize, Duration releaseTimeout, int remapAttempts,
            Duration remapBackoff) {
        public Settings {
            if (blockSize < FRAME_SIZE || Long.bitCount(blockSize) != 1) {
                throw new IllegalArgumentException("discard block size must be a power of two of at least 4096, was "
                        + blockSize);
            }
            if (remapAttempts < 1) {
                throw new IllegalArgumentException("remap attempts must be at least 1, was " + remapAttempts);
            }
        }

        /** Defaults: 2 MiB blocks, 5 s to unmap, 3 remap attempts 200 ms apart. */
        public static Settings withDrainTimeout(Duration drainTimeout) {
            return new Settings(drainTimeout, 2L << 20, Duration.ofSeconds(5), 3, Duration.ofMillis(200));
        }

        public Settings withBlockSize(long size) {
            return new Settings(drainTimeout, size, releaseTimeout, remapAttempts, remapBackoff);
        }

        public Settings withReleaseTimeout(Duration timeout) {
            return new Settings(drainTimeout, blockSize, timeout, remapAttempts, remapBackoff);
        }
    }

    /** QEMU's two kinds of discard holders. */
    public enum HolderKind {
        /** No discard may run while the holder is registered ({@code ram_block_uncoordinated_discard_disable}). */
        UNCOORDINATED_DISABLED,
        /** Discards must be coordinated with the holder ({@code ram_block_coordinated_discard_require}). */
        COORDINATED_REQUIRED
    }

    /**
     * The actor that holds a holder's pins, and where to ask it whether they are gone.
     *
     * @param actor the pin owner itself (watched)
     * @param port  where it answers {@link AwaitPinsGone}
     */
    public record PinOwner(ActorRef<?> actor, ActorRef<PinOwnerRequest> port, long blockSize) {
        public PinOwner {
            Objects.requireNonNull(actor, "actor");
            Objects.requireNonNull(port, "port");
        }
    }

    /** What a pin owner answers for the manager. */
    public sealed interface PinOwnerRequest permits AwaitPinsGone, ReleaseBlocks, RestoreBlocks {
    }

    /** Unmap and unpin every mapping inside each of {@code blocks} (guest ranges of one block each), then answer. */
    public record ReleaseBlocks(List<AddressRange> blocks, ActorRef<BlockReply> replyTo) implements PinOwnerRequest {
        public ReleaseBlocks {
            blocks = List.copyOf(blocks);
            Objects.requireNonNull(replyTo, "replyTo");
        }
    }

    /** Populate and map again each of {@code blocks} that this owner released, then answer. */
    public record RestoreBlocks(List<AddressRange> blocks, ActorRef<BlockReply> replyTo) implements PinOwnerRequest {
        public RestoreBlocks {
            blocks = List.copyOf(blocks);
            Objects.requireNonNull(replyTo, "replyTo");
        }
    }

    /** A pin owner's answer to {@link ReleaseBlocks} or {@link RestoreBlocks}. */
    public sealed interface BlockReply permits BlocksDone, BlocksFailed {
    }

    /** Every block of the request is unmapped (or mapped again). */
    public record BlocksDone(String owner) implements BlockReply {
    }

    /** The blocks {@code failed} are not; the others are. */
    public record BlocksFailed(String owner, List<AddressRange> failed, String reason) implements BlockReply {
        public BlocksFailed {
            failed = List.copyOf(failed);
        }
    }

    /** Answer {@link PinsGone} once {@code holder} has nothing pinned by the owner any more (at once if so now). */
    public record AwaitPinsGone(ActorRef<?> holder, ActorRef<PinsGone> replyTo) implements PinOwnerRequest {
        public AwaitPinsGone {
            Objects.requireNonNull(holder, "holder");
            Objects.requireNonNull(replyTo, "replyTo");
        }
    }

    /** {@code holder} holds no pins in {@code owner} any more. */
    public record PinsGone(String owner, ActorRef<?> holder) {
    }

    /**
     * Register {@code holder} (watched) as a holder of {@code kind}.
     *
     * @param holderName how status and events name the holder
     * @param pinOwner   the actor pinning the pages the registration protects, if any
     */
    public record Register(ActorRef<?> holder, String holderName, HolderKind kind, Optional<PinOwner> pinOwner,
            ActorRef<RegistrationResult> replyTo) implements Command {
        public Register {
            Objects.requireNonNull(holder, "holder");
            Objects.requireNonNull(holderName, "holderName");
            Objects.requireNonNull(kind, "kind");
            Objects.requireNonNull(pinOwner, "pinOwner");
            Objects.requireNonNull(replyTo, "replyTo");
        }
    }

    /** Release the registration of {@code holder}. */
    public record Unregister(ActorRef<?> holder, ActorRef<RegistrationResult> replyTo) implements Command {
        public Unregister {
            Objects.requireNonNull(holder, "holder");
            Objects.requireNonNull(replyTo, "replyTo");
        }
    }

    /** The outcome of {@link Register} and {@link Unregister}. */
    public sealed interface RegistrationResult permits Registered, Unregistered, RegistrationRefused {
    }

    /** The holder is registered; {@code count} holders of its kind now. */
    public record Registered(String holderName, HolderKind kind, int count) implements RegistrationResult {
    }

    /** The holder is released; {@code count} holders of its kind remain. */
    public record Unregistered(String holderName, HolderKind kind, int count) implements RegistrationResult {
    }

    /** The request made no sense (a second registration by one holder, a release by a non-holder). */
    public record RegistrationRefused(String reason) implements RegistrationResult {
    }

    /**
     * May the guest ranges {@code ranges} ({@code pages} 4 KiB pages in all) be discarded? {@code requester} is
     * watched while a {@link DiscardNow} it received is outstanding.
     */
    public record RequestDiscard(ActorRef<?> requester, List<AddressRange> ranges, long pages,
            ActorRef<Decision> replyTo) implements Command {
        public RequestDiscard {
            Objects.requireNonNull(requester, "requester");
            ranges = List.copyOf(ranges);
            Objects.requireNonNull(replyTo, "replyTo");
        }
    }

    /**
     * Free page reporting: the guest reports free chunks {@code ranges} ({@code pages} 4 KiB pages in all). Answered
     * {@link DiscardNow} only while no holder of either kind is registered (draining ones included), otherwise
     * {@link Refused} naming them all: the guest reuses a reported page without telling the host, so a coordinated
     * container would have no moment to map it again. The requester reports {@link DiscardDone} as for a balloon.
     */
    public record ReportFreePages(ActorRef<?> requester, List<AddressRange> ranges, long pages,
            ActorRef<Decision> replyTo) implements Command {
        public ReportFreePages {
            Objects.requireNonNull(requester, "requester");
            ranges = List.copyOf(ranges);
            Objects.requireNonNull(replyTo, "replyTo");
        }
    }

    /** The answer to {@link RequestDiscard} and {@link ReportFreePages}. */
    public sealed interface Decision permits DiscardNow, Held, Refused {
    }

    /**
     * Discard {@code ranges} now, then report {@link DiscardDone} with {@code ticket}: until then no new holder is
     * told it is registered. {@code deferrable}: no holder of either kind was registered when the manager granted it
     * (nothing maps or pins guest RAM, and nothing will until {@link DiscardDone}), so the requester may answer its
     * guest first and run the discard later, as long as it runs before the frames are given back.
     */
    public record DiscardNow(long ticket, List<AddressRange> ranges, boolean deferrable) implements Decision {
        public DiscardNow {
            ranges = List.copyOf(ranges);
        }

        /** A discard to run before anything else (not deferrable). */
        public DiscardNow(long ticket, List<AddressRange> ranges) {
            this(ticket, ranges, false);
        }
    }

    /** Keep {@code ranges} ({@code frames} frames): the manager will discard nothing of them yet. */
    public record Held(List<AddressRange> ranges, long frames) implements Decision {
        public Held {
            ranges = List.copyOf(ranges);
        }
    }

    /** Nothing may be discarded: {@code holders} disable discards. */
    public record Refused(List<String> holders) implements Decision {
        public Refused {
            holders = List.copyOf(holders);
        }
    }

    /** The discards that {@link DiscardNow} {@code ticket} allowed have run; {@code pages} pages were discarded. */
    public record DiscardDone(long ticket, long pages) implements Command {
    }

    /**
     * The guest driver takes back the frames of {@code ranges}: any discarded block they touch is populated and mapped
     * again in every coordinated container before {@link Reclaimed} is answered, and only then may the guest be told.
     */
    public record Reclaim(List<AddressRange> ranges, ActorRef<ReclaimResult> replyTo) implements Command {
        public Reclaim {
            ranges = List.copyOf(ranges);
            Objects.requireNonNull(replyTo, "replyTo");
        }
    }

    /**
     * The guest may reuse every ballooned page without telling the host (device reset, {@code FEATURES_OK}): every
     * discarded block is populated and mapped again before {@link Reclaimed} is answered.
     */
    public record RestoreAll(ActorRef<ReclaimResult> replyTo) implements Command {
        public RestoreAll {
            Objects.requireNonNull(replyTo, "replyTo");
        }
    }

    /** The outcome of {@link Reclaim} and {@link RestoreAll}. */
    public sealed interface ReclaimResult permits Reclaimed, ReclaimFailed {
    }

    /** Done; {@code blocksRestored} blocks were mapped again. */
    public record Reclaimed(int blocksRestored) implements ReclaimResult {
    }

    /** A remap kept failing: the VM is stopped ({@link FailStop}), the guest must not reuse those pages. */
    public record ReclaimFailed(String reason) implements ReclaimResult {
    }

    /**
     * Whether the guest driver negotiated {@code VIRTIO_BALLOON_F_MUST_TELL_HOST} (it tells the host before it reuses
     * a ballooned page). Until it is told so, the manager assumes not, and coordinated holders disable discards.
     */
    public record SetGuestContract(boolean mustTellHost) implements Command {
    }

    /** Sent to the fail-stop listener when a discarded block cannot be mapped again: stop the guest. */
    public record FailStop(String manager, String reason) {
    }

    /** Ask for the manager's {@link DiscardState}. */
    public record GetState(ActorRef<DiscardState> replyTo) implements Command {
        public GetState {
            Objects.requireNonNull(replyTo, "replyTo");
        }
    }

    private record HolderStopped(ActorRef<?> holder) implements Command {
    }

    private record PinOwnerStopped(ActorRef<?> pinOwner) implements Command {
    }

    private record RequesterStopped(ActorRef<?> requester) implements Command {
    }

    private record DrainConfirmed(ActorRef<?> holder) implements Command {
    }

    private record DrainUnconfirmed(ActorRef<?> holder, String reason) implements Command {
    }

    /** A pin owner answered (or did not, {@code failure}) the block coordination {@code round}. */
    private record OwnerReplied(long round, ActorRef<?> owner, BlockReply reply, Throwable failure)
            implements Command {
    }

    /** Try the restore of {@code round} again. */
    private record RetryRestore(long round) implements Command {
    }

    /** Why a coordinated holder falls back to disabling discards. */
    static final String REPORTING_UNDER_PIN = "free page reporting is skipped while a VFIO container may map guest "
            + "RAM: the guest reuses reported pages without telling the host, so no container could map them again "
            + "in time";

    static final String NO_GUEST_CONTRACT = "the guest driver has not negotiated VIRTIO_BALLOON_F_MUST_TELL_HOST, so "
            + "it may reuse a ballooned page without telling the host: coordinated holders disable discards";

    private static final class Holder {
        final ActorRef<?> ref;
        final String name;
        final HolderKind kind;
        final Optional<PinOwner> pinOwner;
        boolean draining;

        Holder(ActorRef<?> ref, String name, HolderKind kind, Optional<PinOwner> pinOwner) {
            this.ref = ref;
            this.name = name;
            this.kind = kind;
            this.pinOwner = pinOwner;
        }
    }

    /** What a block coordination round is for. */
    private enum RoundKind {
        RELEASE,
        RESTORE
    }

    /** One round of block coordination: the blocks, the owners still to answer, and whom to answer at the end. */
    private static final class Round {
        final long id;
        final RoundKind kind;
        final List<Long> blocks;
        final Set<ActorRef<?>> awaiting = new HashSet<>();
        final Set<Long> failed = new TreeSet<>();
        final List<String> reasons = new ArrayList<>();
        /** RELEASE: the request to answer. */
        final RequestDiscard request;
        /** RESTORE: whom to answer, the frames being reclaimed (kept out of the held set), and the attempt. */
        final ActorRef<ReclaimResult> reclaimer;
        final List<AddressRange> reclaimed;
        final int attempt;

        Round(long id, RoundKind kind, List<Long> blocks, RequestDiscard request, ActorRef<ReclaimResult> reclaimer,
                List<AddressRange> reclaimed, int attempt) {
            this.id = id;
            this.kind = kind;
            this.blocks = List.copyOf(blocks);
            this.request = request;
            this.reclaimer = reclaimer;
            this.reclaimed = reclaimed;
            this.attempt = attempt;
        }
    }

    private static final long FRAME_SIZE = 4096;

    private final String name;
    private final Settings settings;
    private final Optional<ActorRef<FailStop>> failStop;
    private final StashBuffer<Command> stash;
    private final TimerScheduler<Command> timers;
    private final int framesPerBlock;
    private final Map<ActorRef<?>, Holder> holders = new LinkedHashMap<>();
    private final Set<ActorRef<?>> watchedPinOwners = new HashSet<>();
    /** Outstanding {@link DiscardNow} tickets and their requesters. */
    private final Map<Long, ActorRef<?>> inFlight = new HashMap<>();
    private final Map<ActorRef<?>, Integer> watchedRequesters = new HashMap<>();
    /** Registrations counted but not yet answered, because a discard or a block round was in flight. */
    private final Queue<Register> unanswered = new ArrayDeque<>();
    /** Frames the balloon holds that are not discarded yet, by block index. */
    private final TreeMap<Long, BitSet> held = new TreeMap<>();
    /** Blocks unmapped in every coordinated container and discarded. */
    private final TreeSet<Long> discarded = new TreeSet<>();
    private boolean mustTellHost;
    private Round round;
    private long nextRound = 1;
    private long nextTicket = 1;
    private long discardsGranted;
    private long discardsRefused;
    private long discardsHeld;
    private long bytesDiscarded;
    private long bytesRefused;
    private long blockReleaseFailures;
    private long remapFailures;
    /** Outstanding {@link DiscardNow} tickets that answered a {@link ReportFreePages}. */
    private final Set<Long> reportTickets = new HashSet<>();
    private long reportsGranted;
    private long reportsSkipped;
    private long reportedBytesDiscarded;
    private long reportedBytesSkipped;
    private String lastReportSkipReason = "";

    private DiscardManager(ActorContext<Command> context, String name, Settings settings,
            Optional<ActorRef<FailStop>> failStop, StashBuffer<Command> stash, TimerScheduler<Command> timers) {
        super(context);
        this.name = name;
        this.settings = settings;
        this.failStop = failStop;
        this.stash = stash;
        this.timers = timers;
        this.framesPerBlock = (int) (settings.blockSize() / FRAME_SIZE);
    }

    /**
     * A discard manager called {@code name} with default settings; after a holder with a pin owner stopped, it asks
     * the owner again every {@code drainTimeout} until the owner confirms the pins are gone or stops.
     */
    public static Behavior<Command> create(String name, Duration drainTimeout) {
        return create(name, Settings.withDrainTimeout(drainTimeout), Optional.empty());
    }

    /**
     * A discard manager called {@code name}; {@code failStop} (the VM) is told when a discarded block cannot be
     * mapped again, so the guest is stopped rather than left to read stale memory.
     */
    public static Behavior<Command> create(String name, Settings settings, Optional<ActorRef<FailStop>> failStop) {
        return Behaviors.supervise(Behaviors.<Command>withStash(STASH_CAPACITY, stash -> Behaviors.withTimers(
                timers -> Behaviors.setup(context -> new DiscardManager(context, name, settings, failStop, stash,
                        timers))))).onFailure(SupervisorStrategy.resume());
    }

    private static final int STASH_CAPACITY = 10_000;

    @Override
    public Receive<Command> createReceive() {
        return newReceiveBuilder()
                .onMessage(Register.class, this::onRegister)
                .onMessage(Unregister.class, this::onUnregister)
                .onMessage(RequestDiscard.class, this::onRequestDiscard)
                .onMessage(ReportFreePages.class, this::onReportFreePages)
                .onMessage(DiscardDone.class, this::onDiscardDone)
                .onMessage(Reclaim.class, this::onReclaim)
                .onMessage(RestoreAll.class, this::onRestoreAll)
                .onMessage(SetGuestContract.class, this::onSetGuestContract)
                .onMessage(GetState.class, this::onGetState)
                .onMessage(HolderStopped.class, this::onHolderStopped)
                .onMessage(PinOwnerStopped.class, this::onPinOwnerStopped)
                .onMessage(RequesterStopped.class, this::onRequesterStopped)
                .onMessage(DrainConfirmed.class, this::onDrainConfirmed)
                .onMessage(DrainUnconfirmed.class, this::onDrainUnconfirmed)
                .onMessage(OwnerReplied.class, this::onOwnerReplied)
                .onMessage(RetryRestore.class, this::onRetryRestore)
                .build();
    }

    private Behavior<Command> onRegister(Register register) {
        if (holders.containsKey(register.holder())) {
            register.replyTo().tell(new RegistrationRefused(register.holderName() + " is already registered with "
                    + "discard manager " + name));
            return this;
        }
        if (register.kind() == HolderKind.COORDINATED_REQUIRED) {
            Optional<String> refusal = register.pinOwner().isEmpty()
                    ? Optional.of("a holder that requires coordinated discards must name the container that "
                            + "unmaps its blocks")
                    : register.pinOwner().get().blockSize() != settings.blockSize()
                            ? Optional.of("its container maps blocks of " + register.pinOwner().get().blockSize()
                                    + " bytes but discard manager " + name + " coordinates blocks of "
                                    + settings.blockSize() + " bytes")
                            : Optional.empty();
            if (refusal.isPresent()) {
                register.replyTo().tell(new RegistrationRefused(register.holderName() + ": " + refusal.get()));
                return this;
            }
        }
        Holder holder = new Holder(register.holder(), register.holderName(), register.kind(), register.pinOwner());
        holders.put(register.holder(), holder);
        getContext().watchWith(register.holder(), new HolderStopped(register.holder()));
        register.pinOwner().ifPresent(owner -> {
            if (watchedPinOwners.add(owner.actor())) {
                getContext().watchWith(owner.actor(), new PinOwnerStopped(owner.actor()));
            }
        });
        holdersChanged("register " + holder.name);
        if (inFlight.isEmpty() && round == null) {
            answer(register);
        } else {
            unanswered.add(register);
        }
        return this;
    }

    private void answer(Register register) {
        Holder holder = holders.get(register.holder());
        if (holder == null) {
            return; // stopped before it could be told: its release already ran
        }
        register.replyTo().tell(new Registered(holder.name, holder.kind, count(holder.kind)));
    }

    private Behavior<Command> onUnregister(Unregister unregister) {
        Holder holder = holders.get(unregister.holder());
        if (holder == null) {
            unregister.replyTo().tell(new RegistrationRefused(unregister.holder().path().name() + " is not "
                    + "registered with discard manager " + name));
            return this;
        }
        remove(holder, "release " + holder.name);
        unregister.replyTo().tell(new Unregistered(holder.name, holder.kind, count(holder.kind)));
        return this;
    }

    private Behavior<Command> onRequestDiscard(RequestDiscard request) {
        if (round != null) {
            stash.stash(request);
            return this;
        }
        List<String> disabling = disablingNames();
        if (!disabling.isEmpty()) {
            discardsRefused++;
            bytesRefused += request.pages() * FRAME_SIZE;
            request.replyTo().tell(new Refused(disabling));
            return this;
        }
        if (count(HolderKind.COORDINATED_REQUIRED) == 0) {
            // Nothing maps guest RAM: the new frames and any still held go now.
            List<AddressRange> ranges = new ArrayList<>(request.ranges());
            for (Map.Entry<Long, BitSet> e : held.entrySet()) {
                ranges.addAll(frameRanges(e.getKey(), e.getValue()));
            }
            held.clear();
            grant(request, ranges);
            return this;
        }
        List<Long> complete = hold(request.ranges());
        if (complete.isEmpty()) {
            discardsHeld++;
            request.replyTo().tell(new Held(request.ranges(), request.pages()));
            return this;
        }
        startRound(new Round(nextRound++, RoundKind.RELEASE, complete, request, null, List.of(), 1));
        return this;
    }

    private void grant(RequestDiscard request, List<AddressRange> ranges) {
        discardsGranted++;
        request.replyTo().tell(new DiscardNow(issueTicket(request.requester()), ranges, holders.isEmpty()));
    }

    private long issueTicket(ActorRef<?> requester) {
        long ticket = nextTicket++;
        inFlight.put(ticket, requester);
        if (watchedRequesters.merge(requester, 1, Integer::sum) == 1) {
            getContext().watchWith(requester, new RequesterStopped(requester));
        }
        return ticket;
    }

    private Behavior<Command> onReportFreePages(ReportFreePages report) {
        if (round != null) {
            stash.stash(report);
            return this;
        }
        if (!holders.isEmpty()) {
            // Any holder, coordinated or not: see REPORTING_UNDER_PIN.
            List<String> names = names();
            reportsSkipped++;
            reportedBytesSkipped += report.pages() * FRAME_SIZE;
            lastReportSkipReason = REPORTING_UNDER_PIN + " (holders: " + String.join(", ", names) + ")";
            report.replyTo().tell(new Refused(names));
            return this;
        }
        long ticket = issueTicket(report.requester());
        reportTickets.add(ticket);
        reportsGranted++;
        report.replyTo().tell(new DiscardNow(ticket, report.ranges()));
        return this;
    }

    /** Add the frames of {@code ranges} to the held set; the blocks they complete (not discarded yet). */
    private List<Long> hold(List<AddressRange> ranges) {
        for (AddressRange r : ranges) {
            for (long gpa = r.base(); gpa < r.base() + r.size(); gpa += FRAME_SIZE) {
                held.computeIfAbsent(gpa / settings.blockSize(), b -> new BitSet(framesPerBlock))
                        .set((int) ((gpa % settings.blockSize()) / FRAME_SIZE));
            }
        }
        return completeBlocks();
    }

    private List<Long> completeBlocks() {
        return held.entrySet().stream()
                .filter(e -> e.getValue().cardinality() == framesPerBlock && !discarded.contains(e.getKey()))
                .map(Map.Entry::getKey).toList();
    }

    private List<AddressRange> frameRanges(long block, BitSet frames) {
        List<AddressRange> out = new ArrayList<>();
        for (int f = frames.nextSetBit(0); f >= 0; f = frames.nextSetBit(frames.nextClearBit(f))) {
            int end = frames.nextClearBit(f);
            out.add(AddressRange.of(block * settings.blockSize() + f * FRAME_SIZE, (end - f) * FRAME_SIZE));
        }
        return out;
    }

    private AddressRange blockRange(long block) {
        return AddressRange.of(block * settings.blockSize(), settings.blockSize());
    }

    /** The containers of coordinated holders (draining ones too: their containers may still map blocks). */
    private List<PinOwner> coordinatedOwners() {
        Map<ActorRef<?>, PinOwner> owners = new LinkedHashMap<>();
        holders.values().stream().filter(h -> h.kind == HolderKind.COORDINATED_REQUIRED)
                .forEach(h -> h.pinOwner.ifPresent(o -> owners.putIfAbsent(o.actor(), o)));
        return List.copyOf(owners.values());
    }

    private void startRound(Round next) {
        round = next;
        List<AddressRange> ranges = next.blocks.stream().map(this::blockRange).toList();
        for (PinOwner owner : coordinatedOwners()) {
            next.awaiting.add(owner.actor());
            long id = next.id;
            ContextAsk.ask(getContext(), BlockReply.class, owner.port(), settings.releaseTimeout(),
                    replyTo -> next.kind == RoundKind.RELEASE ? new ReleaseBlocks(ranges, replyTo)
                            : new RestoreBlocks(ranges, replyTo),
                    (reply, failure) -> new OwnerReplied(id, owner.actor(), reply, failure));
        }
        if (next.awaiting.isEmpty()) {
            finishRound();
        }
    }

    private Behavior<Command> onOwnerReplied(OwnerReplied replied) {
        if (round == null || round.id != replied.round() || !round.awaiting.remove(replied.owner())) {
            return this;
        }
        if (replied.reply() instanceof BlocksFailed failed) {
            failed.failed().forEach(r -> round.failed.add(r.base() / settings.blockSize()));
            round.reasons.add(failed.owner() + ": " + failed.reason());
        } else if (replied.reply() == null) {
            round.failed.addAll(round.blocks);
            round.reasons.add(replied.owner().path().name() + " did not answer: "
                    + replied.failure().getMessage());
        }
        if (round.awaiting.isEmpty()) {
            finishRound();
        }
        return this;
    }

    private void finishRound() {
        Round done = round;
        round = null;
        if (done.kind == RoundKind.RELEASE) {
            finishRelease(done);
        } else {
            finishRestore(done);
        }
        if (round == null) {
            answerWaitingRegistrations();
            stash.unstashAll(this);
        }
    }

    private void finishRelease(Round done) {
        List<AddressRange> ranges = new ArrayList<>();
        for (long block : done.blocks) {
            if (done.failed.contains(block)) {
                continue;
            }
            discarded.add(block);
            held.remove(block);
            ranges.add(blockRange(block));
        }
        if (!done.failed.isEmpty()) {
            blockReleaseFailures += done.failed.size();
            getContext().getLog().error("Discard manager {}: blocks {} were not unmapped everywhere ({}); they are "
                    + "not discarded and their frames stay held", name, done.failed.stream().map(this::blockRange)
                    .toList(), String.join("; ", done.reasons));
        }
        if (ranges.isEmpty()) {
            discardsHeld++;
            done.request.replyTo().tell(new Held(done.request.ranges(), done.request.pages()));
        } else {
            grant(done.request, ranges);
        }
    }

    private Behavior<Command> onReclaim(Reclaim reclaim) {
        if (round != null) {
            stash.stash(reclaim);
            return this;
        }
        Set<Long> touched = new TreeSet<>();
        for (AddressRange r : reclaim.ranges()) {
            for (long gpa = r.base(); gpa < r.base() + r.size(); gpa += FRAME_SIZE) {
                long block = gpa / settings.blockSize();
                BitSet frames = held.get(block);
                if (frames != null) {
                    frames.clear((int) ((gpa % settings.blockSize()) / FRAME_SIZE));
                    if (frames.isEmpty()) {
                        held.remove(block);
                    }
                }
                if (discarded.contains(block)) {
                    touched.add(block);
                }
            }
        }
        if (touched.isEmpty()) {
            reclaim.replyTo().tell(new Reclaimed(0));
            return this;
        }
        startRound(new Round(nextRound++, RoundKind.RESTORE, List.copyOf(touched), null, reclaim.replyTo(),
                reclaim.ranges(), 1));
        return this;
    }

    private Behavior<Command> onRestoreAll(RestoreAll restore) {
        if (round != null) {
            stash.stash(restore);
            return this;
        }
        if (discarded.isEmpty()) {
            restore.replyTo().tell(new Reclaimed(0));
            return this;
        }
        startRound(new Round(nextRound++, RoundKind.RESTORE, List.copyOf(discarded), null, restore.replyTo(),
                List.of(), 1));
        return this;
    }

    private void finishRestore(Round done) {
        List<Long> restored = done.blocks.stream().filter(b -> !done.failed.contains(b)).toList();
        for (long block : restored) {
            discarded.remove(block);
            // The block's other frames are still in the balloon: held again until the block completes anew.
            BitSet frames = new BitSet(framesPerBlock);
            frames.set(0, framesPerBlock);
            for (AddressRange r : done.reclaimed) {
                for (long gpa = r.base(); gpa < r.base() + r.size(); gpa += FRAME_SIZE) {
                    if (gpa / settings.blockSize() == block) {
                        frames.clear((int) ((gpa % settings.blockSize()) / FRAME_SIZE));
                    }
                }
            }
            if (!frames.isEmpty()) {
                held.put(block, frames);
            }
        }
        if (done.failed.isEmpty()) {
            done.reclaimer.tell(new Reclaimed(restored.size()));
            return;
        }
        remapFailures += done.failed.size();
        String reason = "blocks " + done.failed.stream().map(this::blockRange).toList() + " could not be mapped again ("
                + String.join("; ", done.reasons) + ")";
        if (done.attempt < settings.remapAttempts()) {
            getContext().getLog().warn("Discard manager {}: {}; attempt {} of {}, retrying", name, reason,
                    done.attempt, settings.remapAttempts());
            Round retry = new Round(nextRound++, RoundKind.RESTORE, List.copyOf(done.failed), null, done.reclaimer,
                    done.reclaimed, done.attempt + 1);
            round = retry; // nothing else runs until the remap succeeds or the VM is stopped
            timers.startSingleTimer(new RetryRestore(retry.id), settings.remapBackoff());
            return;
        }
        String message = "discard manager " + name + ": " + reason + " after " + done.attempt + " attempts; the guest "
                + "must not reuse those pages, so the VM is stopped";
        getContext().getLog().error(message);
        failStop.ifPresent(listener -> listener.tell(new FailStop(name, message)));
        done.reclaimer.tell(new ReclaimFailed(message));
    }

    private Behavior<Command> onRetryRestore(RetryRestore retry) {
        if (round != null && round.id == retry.round() && round.awaiting.isEmpty()) {
            Round next = round;
            round = null;
            startRound(next);
        }
        return this;
    }

    private Behavior<Command> onSetGuestContract(SetGuestContract contract) {
        if (contract.mustTellHost() != mustTellHost) {
            mustTellHost = contract.mustTellHost();
            getContext().getLog().info("Discard manager {}: the guest {} VIRTIO_BALLOON_F_MUST_TELL_HOST{}", name,
                    mustTellHost ? "negotiated" : "did not negotiate", mustTellHost ? ""
                            : "; coordinated holders disable discards");
        }
        return this;
    }

    private Behavior<Command> onDiscardDone(DiscardDone done) {
        ActorRef<?> requester = inFlight.remove(done.ticket());
        if (requester == null) {
            getContext().getLog().warn("Discard manager {}: DiscardDone for unknown ticket {}", name, done.ticket());
            return this;
        }
        if (reportTickets.remove(done.ticket())) {
            reportedBytesDiscarded += done.pages() * FRAME_SIZE;
        } else {
            bytesDiscarded += done.pages() * FRAME_SIZE;
        }
        forgetRequester(requester, 1);
        answerWaitingRegistrations();
        return this;
    }

    private void forgetRequester(ActorRef<?> requester, int tickets) {
        Integer left = watchedRequesters.merge(requester, -tickets, Integer::sum);
        if (left != null && left <= 0) {
            watchedRequesters.remove(requester);
            getContext().unwatch(requester);
        }
    }

    private Behavior<Command> onRequesterStopped(RequesterStopped stopped) {
        // A requester that stopped runs no discard any more: its outstanding tickets are void.
        inFlight.entrySet().removeIf(e -> {
            boolean voided = e.getValue().equals(stopped.requester());
            if (voided) {
                reportTickets.remove(e.getKey());
            }
            return voided;
        });
        watchedRequesters.remove(stopped.requester());
        answerWaitingRegistrations();
        return this;
    }

    private void answerWaitingRegistrations() {
        while (inFlight.isEmpty() && round == null && !unanswered.isEmpty()) {
            answer(unanswered.poll());
        }
    }

    private Behavior<Command> onHolderStopped(HolderStopped stopped) {
        Holder holder = holders.get(stopped.holder());
        if (holder == null) {
            return this;
        }
        if (holder.pinOwner.isEmpty()) {
            getContext().getLog().warn("Discard holder {} of {} stopped; releasing it", holder.name, name);
            remove(holder, "holder stopped");
            return this;
        }
        getContext().getLog().warn("Discard holder {} of {} stopped; releasing it once its pin owner has unpinned",
                holder.name, name);
        holder.draining = true;
        askDrain(holder);
        return this;
    }

    private void askDrain(Holder holder) {
        ActorRef<PinOwnerRequest> port = holder.pinOwner.orElseThrow().port();
        ContextAsk.ask(getContext(), PinsGone.class, port, settings.drainTimeout(),
                replyTo -> new AwaitPinsGone(holder.ref, replyTo),
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
            getContext().getLog().error("Discard manager {}: the pin owner of stopped holder {} has not confirmed "
                    + "its pins are gone ({}); keeping it registered and asking again", name, holder.name,
                    unconfirmed.reason());
            askDrain(holder);
        }
        return this;
    }

    private Behavior<Command> onPinOwnerStopped(PinOwnerStopped stopped) {
        watchedPinOwners.remove(stopped.pinOwner());
        // The owner's PostStop closed its IOMMU before this arrived: the pins of its stopped holders are gone, and
        // it maps no block any more.
        List<Holder> drained = holders.values().stream()
                .filter(h -> h.draining && h.pinOwner.map(o -> o.actor().equals(stopped.pinOwner())).orElse(false))
                .toList();
        drained.forEach(h -> remove(h, "holder stopped"));
        if (round != null && round.awaiting.remove(stopped.pinOwner()) && round.awaiting.isEmpty()
                && !timers.isTimerActive(new RetryRestore(round.id))) {
            finishRound();
        }
        return this;
    }

    private void remove(Holder holder, String cause) {
        holders.remove(holder.ref);
        getContext().unwatch(holder.ref);
        unanswered.removeIf(r -> r.holder().equals(holder.ref));
        holdersChanged(cause);
    }

    private int count(HolderKind kind) {
        return (int) holders.values().stream().filter(h -> h.kind == kind).count();
    }

    private List<String> names() {
        return holders.values().stream().map(h -> h.draining ? h.name + " (stopped, draining)" : h.name).toList();
    }

    /** The holders that disable discards now: uncoordinated ones, and coordinated ones without the guest contract. */
    private List<String> disablingNames() {
        return holders.values().stream()
                .filter(h -> h.kind == HolderKind.UNCOORDINATED_DISABLED || !mustTellHost)
                .map(h -> h.draining ? h.name + " (stopped, draining)" : h.name).toList();
    }

    private void holdersChanged(String cause) {
        // Every attach and detach passes here: the InhibitChanged event carries it; the log only when asked for.
        getContext().getLog().debug("Discard manager {} holders: {} {} ({})", name, holders.size(), names(), cause);
        ActovisorEvent.publish(getContext().getSystem(), new ActovisorEvent.InhibitChanged(name, holders.size(),
                names(), cause));
    }

    private Behavior<Command> onGetState(GetState get) {
        get.replyTo().tell(state());
        return this;
    }

    private DiscardState state() {
        List<DiscardState.Holder> list = new ArrayList<>();
        List<DiscardState.Fallback> fallbacks = new ArrayList<>();
        for (Holder h : holders.values()) {
            list.add(new DiscardState.Holder(h.name, h.kind, h.draining));
            if (h.kind == HolderKind.COORDINATED_REQUIRED && !mustTellHost) {
                fallbacks.add(new DiscardState.Fallback(h.name, NO_GUEST_CONTRACT));
            }
        }
        long framesHeld = held.values().stream().mapToLong(BitSet::cardinality).sum();
        return new DiscardState(name, count(HolderKind.UNCOORDINATED_DISABLED),
                count(HolderKind.COORDINATED_REQUIRED), list, settings.blockSize(), mustTellHost, discardsGranted,
                discardsRefused, discardsHeld, bytesDiscarded, bytesRefused, framesHeld, framesHeld * FRAME_SIZE,
                discarded.size(), blockReleaseFailures, remapFailures, fallbacks, reportsGranted, reportsSkipped,
                reportedBytesDiscarded, reportedBytesSkipped, lastReportSkipReason);
    }
}
