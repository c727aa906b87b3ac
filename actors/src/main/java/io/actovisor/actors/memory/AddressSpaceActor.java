package io.actovisor.actors.memory;

import io.actovisor.actors.events.ActovisorEvent;
import io.actovisor.memory.FlatView;
import io.actovisor.memory.FlatViewEditor;
import io.actovisor.memory.GuestMemory;
import io.actovisor.memory.GuestMemoryView;
import io.actovisor.memory.MemoryRegion;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Objects;
import java.util.Optional;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;
import org.apache.pekko.actor.typed.javadsl.TimerScheduler;

/**
 * One guest address space: its regions and their {@link FlatView}, and the listeners that mirror it (VFIO
 * containers, KVM memory slots, the balloon, your own).
 *
 * <p>A {@link Commit} carries any number of region changes. The actor computes the new flat view, diffs it against
 * the current one and sends each listener <b>one</b> {@link MemoryListener.Update} with all removed and added
 * sections, one listener at a time in ascending {@code priority} (ties in subscription order). When every listener
 * has applied it, the view is replaced and the committer gets {@link Committed}. If a listener refuses (or does not
 * answer within the acknowledgement timeout), the listeners that had applied the commit receive the inverse update
 * with {@code rollback = true}, in reverse order, and the committer gets {@link CommitFailed} with that listener's
 * reason: a commit applies everywhere or nowhere.
 *
 * <p>Commits, subscriptions and unsubscriptions that arrive while a commit is in flight wait in a queue, so topology
 * changes apply in the order they were sent. <b>Group commit:</b> when the update in flight is done, the commits
 * queued behind it (up to {@value #MAX_GROUP}, none past a queued subscription) go to the listeners as <b>one</b>
 * update, the net change of all of them applied in order; each committer gets its own {@link Committed}, in order.
 * If that update is refused, it is rolled back everywhere and the commits are applied again one by one, so that
 * exactly the commits a listener refuses are refused; a group that is invalid as a whole is split the same way. A
 * committer that waits for each answer never has a commit queued, so nothing changes for it.
 *
 * <p>A new subscriber first receives the whole current view as one update; a listener that stops is dropped
 * (watched), and one that stops mid-commit counts as having applied it (it holds nothing any more).
 *
 * <p>The address space publishes what devices read: after each acknowledged commit it puts an immutable
 * {@link GuestMemory} snapshot of the new view into its {@link GuestMemoryView} ({@link GetGuestMemory}), so
 * virtqueues, the DMA path, the boot layout and the scripted guest see RAM added after the VM started. A refused
 * commit publishes nothing.
 */
public final class AddressSpaceActor extends AbstractBehavior<AddressSpaceActor.Command> {

    /** What an address space accepts. */
    public sealed interface Command {
    }

    /** One change inside a commit. */
    public sealed interface RegionChange permits AddRegion, RemoveRegion {
    }

    /** Add {@code region}; its name must not be in use. */
    public record AddRegion(MemoryRegion region) implements RegionChange {
        public AddRegion {
            Objects.requireNonNull(region, "region");
        }
    }

    /** Remove the region called {@code name}. */
    public record RemoveRegion(String name) implements RegionChange {
        public RemoveRegion {
            Objects.requireNonNull(name, "name");
        }
    }

    /** Apply {@code changes} atomically: every listener applies all of them, or none does. */
    public record Commit(List<RegionChange> changes, ActorRef<CommitResult> replyTo) implements Command {
        public Commit {
            changes = List.copyOf(changes);
            Objects.requireNonNull(replyTo, "replyTo");
        }
    }

    /** The outcome of a {@link Commit}. */
    public sealed interface CommitResult permits Committed, CommitFailed {
        long commitId();
    }

    /**
     * Every listener applied the commit. The section counts are those of the update that carried it: with group
     * commit, the net change of the group.
     */
    public record Committed(long commitId, int sectionsRemoved, int sectionsAdded) implements CommitResult {
    }

    /**
     * The commit was refused and nothing of it remains applied.
     *
     * @param listener who refused: a listener's name, or {@code "address-space"} for an invalid commit
     * @param reason   a sentence naming what failed
     */
    public record CommitFailed(long commitId, String listener, String reason) implements CommitResult {
    }

    /**
     * Subscribe {@code listener} under a unique {@code name}. It first receives the current view as one update; the
     * subscription holds only if it applies that.
     *
     * @param owner the actor whose stop ends the subscription (usually the listener's actor when {@code listener}
     *              is a message adapter)
     */
    public record Subscribe(String name, int priority, ActorRef<MemoryListener.Update> listener, ActorRef<?> owner,
            ActorRef<SubscribeResult> replyTo) implements Command {
        public Subscribe {
            Objects.requireNonNull(name, "name");
            Objects.requireNonNull(listener, "listener");
            Objects.requireNonNull(owner, "owner");
            Objects.requireNonNull(replyTo, "replyTo");
        }
    }

    /** The outcome of a {@link Subscribe}. */
    public sealed interface SubscribeResult permits Subscribed, SubscribeFailed {
    }

    /** The listener applied the current view and will receive every later commit. */
    public record Subscribed(String name, long commitId) implements SubscribeResult {
    }

    /** The listener refused the current view (or the name is taken); it is not subscribed. */
    public record SubscribeFailed(String name, String reason) implements SubscribeResult {
    }

    /** Stop sending updates to the listener {@code name}. The listener tears down its own state. */
    public record Unsubscribe(String name, ActorRef<Unsubscribed> replyTo) implements Command {
    }

    /** Reply to {@link Unsubscribe}; {@code wasSubscribed} is false when no such listener existed. */
    public record Unsubscribed(String name, boolean wasSubscribed) {
    }

    /**
     * Ask for the live guest memory: the {@link GuestMemoryView} this address space publishes each acknowledged
     * commit into. Devices keep the view and take {@link GuestMemoryView#current()} per access.
     */
    public record GetGuestMemory(ActorRef<GuestMemoryView> replyTo) implements Command {
        public GetGuestMemory {
            Objects.requireNonNull(replyTo, "replyTo");
        }
    }

    /** Ask for the current view. */
    public record GetView(ActorRef<View> replyTo) implements Command {
    }

    /**
     * The address space as of the last applied commit.
     *
     * @param regions   the regions, in the order they were added
     * @param listeners the subscribed listeners' names, in notification order
     */
    public record View(String name, long commitId, FlatView flatView, List<MemoryRegion> regions,
            List<String> listeners) {
    }

    private record ListenerReplied(MemoryListener.Reply reply) implements Command {
    }

    private record OwnerStopped(ActorRef<?> owner) implements Command {
    }

    private record AckTimedOut(long sequence) implements Command {
    }

    private record Listener(String name, int priority, long order, ActorRef<MemoryListener.Update> ref,
            ActorRef<?> owner) {
    }

    /** A commit group (or a subscription's initial update) on its way through the listeners. */
    private static final class InFlight {
        final long commitId;
        final Command origin;
        /** The commits this update carries, in order, with their ids (empty for a subscription). */
        List<Commit> group = List.of();
        long firstId;
        final FlatView newView;
        final FlatViewEditor.Staged staged; // null for a subscription's initial update
        final FlatView.Diff diff;
        final List<Listener> targets;
        final List<Listener> applied = new ArrayList<>();
        final java.util.Set<ActorRef<?>> stopped = new java.util.HashSet<>();
        int next;
        Listener awaiting;
        boolean rollingBack;
        String failedListener;
        String failure;

        InFlight(long commitId, Command origin, FlatView newView, FlatViewEditor.Staged staged,
                FlatView.Diff diff, List<Listener> targets) {
            this.commitId = commitId;
            this.origin = origin;
            this.newView = newView;
            this.staged = staged;
            this.diff = diff;
            this.targets = targets;
        }
    }

    /** Default time a listener has to acknowledge one update before the commit fails. */
    public static final Duration DEFAULT_ACK_TIMEOUT = Duration.ofSeconds(30);
    private static final int QUEUE_CAPACITY = 100_000;
    /** The most commits one update carries. */
    static final int MAX_GROUP = 256;
    private static final String SELF = "address-space";

    private final String name;
    private final Duration ackTimeout;
    private final TimerScheduler<Command> timers;
    private final ActorRef<MemoryListener.Reply> replyAdapter;
    private final GuestMemoryView guestMemory;
    // The regions and the flat view, updated incrementally: a commit of k changes costs O(k log n).
    private final FlatViewEditor regions = new FlatViewEditor();
    private final List<Listener> listeners = new ArrayList<>();
    private FlatView view = FlatView.empty();
    private long commitId;
    private long subscriptions;
    private long sequence;
    private InFlight inFlight;
    /** Commits, subscriptions and unsubscriptions that arrived while an update was in flight, in arrival order. */
    private final ArrayDeque<Command> queued = new ArrayDeque<>();
    /** How many commits at the head of {@link #queued} must go alone (a refused or invalid group is being split). */
    private int alone;
    private boolean draining;

    private AddressSpaceActor(ActorContext<Command> context, String name, Duration ackTimeout,
            TimerScheduler<Command> timers, GuestMemoryView guestMemory) {
        super(context);
        this.guestMemory = guestMemory;
        this.name = name;
        this.ackTimeout = ackTimeout;
        this.timers = timers;
        this.replyAdapter = context.messageAdapter(MemoryListener.Reply.class, ListenerReplied::new);
    }

    /** An empty address space called {@code name}, with the default acknowledgement timeout. */
    public static Behavior<Command> create(String name) {
        return create(name, DEFAULT_ACK_TIMEOUT);
    }

    /** An empty address space whose listeners must acknowledge each update within {@code ackTimeout}. */
    public static Behavior<Command> create(String name, Duration ackTimeout) {
        return create(name, ackTimeout, GuestMemoryView.empty());
    }

    /**
     * An empty address space that publishes its guest memory into {@code guestMemory} (created by the caller, so
     * devices can be given the view before the first commit). The view should be empty: the first publication
     * replaces whatever it held.
     */
    public static Behavior<Command> create(String name, Duration ackTimeout, GuestMemoryView guestMemory) {
        Objects.requireNonNull(guestMemory, "guestMemory");
        return Behaviors.withTimers(timers -> Behaviors.setup(context -> new AddressSpaceActor(context, name,
                ackTimeout, timers, guestMemory)));
    }

    @Override
    public Receive<Command> createReceive() {
        return newReceiveBuilder()
                .onMessage(Commit.class, this::onCommit)
                .onMessage(Subscribe.class, this::onSubscribe)
                .onMessage(Unsubscribe.class, this::onUnsubscribe)
                .onMessage(GetView.class, this::onGetView)
                .onMessage(GetGuestMemory.class, this::onGetGuestMemory)
                .onMessage(ListenerReplied.class, this::onListenerReplied)
                .onMessage(OwnerStopped.class, this::onOwnerStopped)
                .onMessage(AckTimedOut.class, this::onAckTimedOut)
                .build();
    }

    private Behavior<Command> onCommit(Commit commit) {
        if (inFlight != null || !queued.isEmpty()) {
            return enqueue(commit);
        }
        return startGroup(List.of(commit));
    }

    private Behavior<Command> enqueue(Command command) {
        if (queued.size() >= QUEUE_CAPACITY) {
            throw new IllegalStateException("address space " + name + " has " + queued.size() + " topology changes "
                    + "queued; a sender does not wait for its answers");
        }
        queued.add(command);
        return this;
    }

    /** Start one update carrying {@code group} (consecutive commits, in order); a single commit goes alone. */
    private Behavior<Command> startGroup(List<Commit> group) {
        if (group.size() > 1) {
            List<FlatViewEditor.Change> all = new ArrayList<>();
            group.forEach(c -> all.addAll(changes(c)));
            FlatViewEditor.Staged staged = regions.stage(all);
            if (!staged.isValid()) {
                // Some commit of the group is invalid (the editor has undone it): split it, so exactly that one is
                // refused.
                return split(group);
            }
            long first = commitId + 1;
            commitId += group.size();
            FlatView.Diff diff = staged.diff();
            List<Listener> targets = diff.isEmpty() ? List.of() : List.copyOf(listeners);
            inFlight = new InFlight(commitId, group.get(group.size() - 1), staged.view(), staged, diff, targets);
            inFlight.group = group;
            inFlight.firstId = first;
            return advance();
        }
        Commit commit = group.get(0);
        long id = ++commitId;
        FlatViewEditor.Staged staged = regions.stage(changes(commit));
        if (!staged.isValid()) {
            String reason = "commit " + id + " refused: " + staged.problems().stream()
                    .map(p -> p + " in address space " + name).collect(java.util.stream.Collectors.joining("; "));
            getContext().getLog().warn(reason);
            commit.replyTo().tell(new CommitFailed(id, SELF, reason));
            ActovisorEvent.publish(getContext().getSystem(), new ActovisorEvent.TopologyRefused(name, id, SELF,
                    reason));
            return this;
        }
        FlatView.Diff diff = staged.diff();
        List<Listener> targets = diff.isEmpty() ? List.of() : List.copyOf(listeners);
        inFlight = new InFlight(id, commit, staged.view(), staged, diff, targets);
        inFlight.group = group;
        inFlight.firstId = id;
        return advance();
    }

    private static List<FlatViewEditor.Change> changes(Commit commit) {
        return commit.changes().stream().<FlatViewEditor.Change>map(c -> c instanceof AddRegion add
                ? new FlatViewEditor.Add(add.region()) : new FlatViewEditor.Remove(((RemoveRegion) c).name()))
                .toList();
    }

    /** Put {@code group} back at the head of the queue, each commit to go alone. */
    private Behavior<Command> split(List<Commit> group) {
        for (int i = group.size() - 1; i >= 0; i--) {
            queued.addFirst(group.get(i));
        }
        alone += group.size();
        return drain();
    }

    /** Start what waited, while nothing is in flight: runs of queued commits as groups. */
    private Behavior<Command> drain() {
        if (draining) {
            return this;
        }
        draining = true;
        try {
            while (inFlight == null && !queued.isEmpty()) {
                Command next = queued.poll();
                if (next instanceof Commit commit) {
                    List<Commit> group = new ArrayList<>();
                    group.add(commit);
                    if (alone > 0) {
                        alone--;
                    } else {
                        while (group.size() < MAX_GROUP && queued.peek() instanceof Commit more && alone == 0) {
                            group.add(more);
                            queued.poll();
                        }
                    }
                    startGroup(group);
                } else if (next instanceof Subscribe subscribe) {
                    startSubscribe(subscribe);
                } else if (next instanceof Unsubscribe unsubscribe) {
                    unsubscribe(unsubscribe);
                }
            }
        } finally {
            draining = false;
        }
        return this;
    }

    private Behavior<Command> onSubscribe(Subscribe subscribe) {
        if (inFlight != null || !queued.isEmpty()) {
            return enqueue(subscribe);
        }
        return startSubscribe(subscribe);
    }

    private Behavior<Command> startSubscribe(Subscribe subscribe) {
        if (listeners.stream().anyMatch(l -> l.name().equals(subscribe.name()))) {
            subscribe.replyTo().tell(new SubscribeFailed(subscribe.name(), "a listener called '" + subscribe.name()
                    + "' is already subscribed to address space " + name));
            return this;
        }
        Listener listener = new Listener(subscribe.name(), subscribe.priority(), subscriptions++, subscribe.listener(),
                subscribe.owner());
        watchOwner(subscribe.owner());
        FlatView.Diff all = FlatView.diff(FlatView.empty(), view);
        inFlight = new InFlight(commitId, subscribe, view, null, all, List.of(listener));
        return advance();
    }

    private Behavior<Command> onUnsubscribe(Unsubscribe unsubscribe) {
        if (inFlight != null || !queued.isEmpty()) {
            return enqueue(unsubscribe);
        }
        return unsubscribe(unsubscribe);
    }

    private Behavior<Command> unsubscribe(Unsubscribe unsubscribe) {
        Optional<Listener> listener = listeners.stream().filter(l -> l.name().equals(unsubscribe.name())).findFirst();
        listener.ifPresent(l -> {
            listeners.remove(l);
            unwatchUnlessListening(l.owner());
        });
        unsubscribe.replyTo().tell(new Unsubscribed(unsubscribe.name(), listener.isPresent()));
        return this;
    }

    private Behavior<Command> onGetView(GetView get) {
        get.replyTo().tell(new View(name, commitId, view, regions.regions(),
                listeners.stream().map(Listener::name).toList()));
        return this;
    }

    private Behavior<Command> onGetGuestMemory(GetGuestMemory get) {
        get.replyTo().tell(guestMemory);
        return this;
    }

    /** Send the next update of the commit in flight, or finish it. */
    private Behavior<Command> advance() {
        InFlight f = inFlight;
        if (!f.rollingBack) {
            while (f.next < f.targets.size()) {
                Listener target = f.targets.get(f.next++);
                if (!f.stopped.contains(target.owner())) {
                    send(target, f.diff, false);
                    return this;
                }
            }
            return finish();
        }
        if (!f.applied.isEmpty()) {
            send(f.applied.remove(f.applied.size() - 1), f.diff.inverse(), true);
            return this;
        }
        return finish();
    }

    private void send(Listener listener, FlatView.Diff diff, boolean rollback) {
        inFlight.awaiting = listener;
        timers.startSingleTimer("ack", new AckTimedOut(++sequence), ackTimeout);
        listener.ref().tell(new MemoryListener.Update(inFlight.commitId, diff.removed(), diff.added(), rollback,
                replyAdapter));
    }

    private Behavior<Command> onListenerReplied(ListenerReplied replied) {
        InFlight f = inFlight;
        MemoryListener.Reply reply = replied.reply();
        String from = reply instanceof MemoryListener.Applied a ? a.listener()
                : ((MemoryListener.Refused) reply).listener();
        if (f == null || f.awaiting == null || reply.commitId() != f.commitId || !f.awaiting.name().equals(from)) {
            getContext().getLog().debug("Ignoring a late reply {} in address space {}", reply, name);
            return this;
        }
        timers.cancel("ack");
        Listener listener = f.awaiting;
        f.awaiting = null;
        if (f.rollingBack) {
            if (reply instanceof MemoryListener.Refused refused) {
                // A rollback only undoes what the listener itself did; refusing it is a listener bug we can only log.
                getContext().getLog().error("Listener {} refused the rollback of commit {}: {}", listener.name(),
                        f.commitId, refused.reason());
            }
            return advance();
        }
        if (reply instanceof MemoryListener.Refused refused) {
            return startRollback(listener.name(), refused.reason());
        }
        f.applied.add(listener);
        return advance();
    }

    private Behavior<Command> startRollback(String listener, String reason) {
        inFlight.rollingBack = true;
        inFlight.failedListener = listener;
        inFlight.failure = reason;
        return advance();
    }

    private Behavior<Command> onAckTimedOut(AckTimedOut timeout) {
        InFlight f = inFlight;
        if (f == null || f.awaiting == null || timeout.sequence() != sequence) {
            return this;
        }
        Listener listener = f.awaiting;
        f.awaiting = null;
        String reason = "listener '" + listener.name() + "' did not acknowledge commit " + f.commitId + " within "
                + ackTimeout.toMillis() + " ms";
        getContext().getLog().error(reason);
        if (f.rollingBack) {
            return advance();
        }
        return startRollback(listener.name(), reason);
    }

    private Behavior<Command> onOwnerStopped(OwnerStopped stopped) {
        listeners.removeIf(l -> l.owner().equals(stopped.owner()));
        InFlight f = inFlight;
        if (f != null) {
            f.stopped.add(stopped.owner());
            f.applied.removeIf(l -> l.owner().equals(stopped.owner()));
            if (f.awaiting != null && f.awaiting.owner().equals(stopped.owner())) {
                // A stopped listener released whatever it held; nothing of this commit is left to undo there.
                timers.cancel("ack");
                f.awaiting = null;
                return advance();
            }
        }
        return this;
    }

    private void watchOwner(ActorRef<?> owner) {
        boolean watched = listeners.stream().anyMatch(l -> l.owner().equals(owner));
        if (!watched) {
            getContext().watchWith(owner, new OwnerStopped(owner));
        }
    }

    private void unwatchUnlessListening(ActorRef<?> owner) {
        if (listeners.stream().noneMatch(l -> l.owner().equals(owner))) {
            getContext().unwatch(owner);
        }
    }

    private Behavior<Command> finish() {
        InFlight f = inFlight;
        inFlight = null;
        if (f.origin instanceof Commit commit) {
            if (f.failure == null) {
                regions.accept(f.staged);
                view = f.newView;
                // Published before the reply, so a committer that hears Committed finds the new RAM in the view.
                guestMemory.publish(GuestMemory.of(view));
                for (int i = 0; i < f.group.size(); i++) {
                    f.group.get(i).replyTo().tell(new Committed(f.firstId + i, f.diff.removed().size(),
                            f.diff.added().size()));
                    ActovisorEvent.publish(getContext().getSystem(), new ActovisorEvent.TopologyCommitted(name,
                            f.firstId + i, f.diff.removed().size(), f.diff.added().size(), f.targets.size()));
                }
            } else if (f.group.size() > 1) {
                // Every listener is back where it was: apply the commits one by one to find the refused ones.
                regions.reject(f.staged);
                getContext().getLog().debug("Address space {}: update {} of {} commits refused by {} ({}); applying "
                        + "them one by one", name, f.commitId, f.group.size(), f.failedListener, f.failure);
                return split(f.group);
            } else {
                regions.reject(f.staged);
                commit.replyTo().tell(new CommitFailed(f.commitId, f.failedListener, f.failure));
                ActovisorEvent.publish(getContext().getSystem(), new ActovisorEvent.TopologyRefused(name,
                        f.commitId, f.failedListener, f.failure));
            }
        } else if (f.origin instanceof Subscribe subscribe) {
            if (f.failure == null && f.applied.size() == 1) {
                Listener listener = f.applied.get(0);
                listeners.add(listener);
                listeners.sort(Comparator.comparingInt(Listener::priority).thenComparingLong(Listener::order));
                subscribe.replyTo().tell(new Subscribed(listener.name(), commitId));
            } else {
                String reason = f.failure != null ? f.failure
                        : "listener '" + subscribe.name() + "' stopped before it applied the current view";
                if (!f.stopped.contains(subscribe.owner())) {
                    unwatchUnlessListening(subscribe.owner());
                }
                subscribe.replyTo().tell(new SubscribeFailed(subscribe.name(), reason));
            }
        }
        return drain();
    }
}
