package io.actovisor.actors.discard;

import io.actovisor.actors.events.ActovisorEvent;
import io.actovisor.memory.AddressRange;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.Queue;
import java.util.Set;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.SupervisorStrategy;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;

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
 * message dropped; the holder table survives (resume supervision). The manager never blocks: it runs on the
 * default dispatcher.
 */
public final class DiscardManager extends AbstractBehavior<DiscardManager.Command> {

    /** What a discard manager accepts. */
    public sealed interface Command permits Register, Unregister, RequestDiscard, DiscardDone, GetState,
            HolderStopped, PinOwnerStopped, RequesterStopped, DrainConfirmed, DrainUnconfirmed {
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
    public record PinOwner(ActorRef<?> actor, ActorRef<PinOwnerRequest> port) {
        public PinOwner {
            Objects.requireNonNull(actor, "actor");
            Objects.requireNonNull(port, "port");
        }
    }

    /** What a pin owner answers for the manager. */
    public sealed interface PinOwnerRequest permits AwaitPinsGone {
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

    /** The answer to {@link RequestDiscard}. */
    public sealed interface Decision permits DiscardNow, Held, Refused {
    }

    /**
     * Discard {@code ranges} now, then report {@link DiscardDone} with {@code ticket}: until then no new holder is
     * told it is registered.
     */
    public record DiscardNow(long ticket, List<AddressRange> ranges) implements Decision {
        public DiscardNow {
            ranges = List.copyOf(ranges);
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

    /** Why a coordinated holder falls back to disabling discards. */
    static final String NO_BLOCK_PATH = "no container of this VM unmaps blocks on request yet: a coordinated holder "
            + "disables discards like an uncoordinated one";

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

    private final String name;
    private final Duration drainTimeout;
    private final Map<ActorRef<?>, Holder> holders = new LinkedHashMap<>();
    private final Set<ActorRef<?>> watchedPinOwners = new HashSet<>();
    /** Outstanding {@link DiscardNow} tickets and their requesters. */
    private final Map<Long, ActorRef<?>> inFlight = new HashMap<>();
    private final Map<ActorRef<?>, Integer> watchedRequesters = new HashMap<>();
    /** Registrations counted but not yet answered, because a discard was in flight. */
    private final Queue<Register> unanswered = new ArrayDeque<>();
    private long nextTicket = 1;
    private long discardsGranted;
    private long discardsRefused;
    private long discardsHeld;
    private long bytesDiscarded;
    private long bytesRefused;

    private DiscardManager(ActorContext<Command> context, String name, Duration drainTimeout) {
        super(context);
        this.name = name;
        this.drainTimeout = drainTimeout;
    }

    /**
     * A discard manager called {@code name}; after a holder with a pin owner stops, it asks the owner again every
     * {@code drainTimeout} until the owner confirms the pins are gone or stops.
     */
    public static Behavior<Command> create(String name, Duration drainTimeout) {
        return Behaviors.supervise(Behaviors.<Command>setup(context ->
                new DiscardManager(context, name, drainTimeout))).onFailure(SupervisorStrategy.resume());
    }

    @Override
    public Receive<Command> createReceive() {
        return newReceiveBuilder()
                .onMessage(Register.class, this::onRegister)
                .onMessage(Unregister.class, this::onUnregister)
                .onMessage(RequestDiscard.class, this::onRequestDiscard)
                .onMessage(DiscardDone.class, this::onDiscardDone)
                .onMessage(GetState.class, this::onGetState)
                .onMessage(HolderStopped.class, this::onHolderStopped)
                .onMessage(PinOwnerStopped.class, this::onPinOwnerStopped)
                .onMessage(RequesterStopped.class, this::onRequesterStopped)
                .onMessage(DrainConfirmed.class, this::onDrainConfirmed)
                .onMessage(DrainUnconfirmed.class, this::onDrainUnconfirmed)
                .build();
    }

    private Behavior<Command> onRegister(Register register) {
        if (holders.containsKey(register.holder())) {
            register.replyTo().tell(new RegistrationRefused(register.holderName() + " is already registered with "
                    + "discard manager " + name));
            return this;
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
        if (inFlight.isEmpty()) {
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
        if (!holders.isEmpty()) {
            // Uncoordinated holders disable discards; coordinated ones fall back to it (see the class comment).
            discardsRefused++;
            bytesRefused += request.pages() * FRAME_SIZE;
            request.replyTo().tell(new Refused(names()));
            return this;
        }
        long ticket = nextTicket++;
        inFlight.put(ticket, request.requester());
        if (watchedRequesters.merge(request.requester(), 1, Integer::sum) == 1) {
            getContext().watchWith(request.requester(), new RequesterStopped(request.requester()));
        }
        discardsGranted++;
        request.replyTo().tell(new DiscardNow(ticket, request.ranges()));
        return this;
    }

    private Behavior<Command> onDiscardDone(DiscardDone done) {
        ActorRef<?> requester = inFlight.remove(done.ticket());
        if (requester == null) {
            getContext().getLog().warn("Discard manager {}: DiscardDone for unknown ticket {}", name, done.ticket());
            return this;
        }
        bytesDiscarded += done.pages() * FRAME_SIZE;
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
        inFlight.values().removeIf(r -> r.equals(stopped.requester()));
        watchedRequesters.remove(stopped.requester());
        answerWaitingRegistrations();
        return this;
    }

    private void answerWaitingRegistrations() {
        while (inFlight.isEmpty() && !unanswered.isEmpty()) {
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
        getContext().ask(PinsGone.class, port, drainTimeout,
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
        // The owner's PostStop closed its IOMMU before this arrived: the pins of its stopped holders are gone.
        List<Holder> drained = holders.values().stream()
                .filter(h -> h.draining && h.pinOwner.map(o -> o.actor().equals(stopped.pinOwner())).orElse(false))
                .toList();
        drained.forEach(h -> remove(h, "holder stopped"));
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

    private void holdersChanged(String cause) {
        getContext().getLog().info("Discard manager {} holders: {} {} ({})", name, holders.size(), names(), cause);
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
            if (h.kind == HolderKind.COORDINATED_REQUIRED) {
                fallbacks.add(new DiscardState.Fallback(h.name, NO_BLOCK_PATH));
            }
        }
        return new DiscardState(name, count(HolderKind.UNCOORDINATED_DISABLED),
                count(HolderKind.COORDINATED_REQUIRED), list, discardsGranted, discardsRefused, discardsHeld,
                bytesDiscarded, bytesRefused, 0, 0, 0, 0, 0, fallbacks);
    }

    private static final long FRAME_SIZE = 4096;
}
