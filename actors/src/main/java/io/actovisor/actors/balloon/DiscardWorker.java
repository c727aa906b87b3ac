package io.actovisor.actors.balloon;

import io.actovisor.actors.discard.DiscardManager;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.HostSpan;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.DispatcherSelector;
import org.apache.pekko.actor.typed.PostStop;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;

/**
 * A balloon's deferred discards, run on a thread of their own ({@link #DISPATCHER}) so that the {@code madvise} of
 * one inflate overlaps the guest's next buffer. The balloon queues what its {@link DiscardManager} allowed
 * ({@link Queue}, with the manager's ticket) and answers the inflate at once; each time the worker runs it takes
 * everything queued since its last run, merges the spans of all those inflates into contiguous host runs (the
 * frames of consecutive buffers are neighbours), discards each run with one call, and only then reports
 * {@link DiscardManager.DiscardDone} for every ticket: until then the manager tells no new holder that it is
 * registered, so nothing it pins can be discarded afterwards. The balloon only defers discards the manager granted
 * while no holder of either kind was registered ({@link DiscardManager.DiscardNow#deferrable()}), and sends
 * {@link Flush} (which runs the queue at once) before anything that must not be overtaken by a queued discard: a
 * deflate, the removal of guest RAM, a status request, a device reset.
 *
 * <p>A child of its balloon: it stops before the balloon does. What is still queued then is dropped, not
 * discarded (the guest keeps the memory, the manager voids the stopped balloon's tickets).
 */
final class DiscardWorker extends AbstractBehavior<DiscardWorker.Command> {
    /** The dispatcher deferred discards run on ({@code actovisor.dispatchers.vm-discard}: one blocking thread). */
    static final DispatcherSelector DISPATCHER = DispatcherSelector.fromConfig("actovisor.dispatchers.vm-discard");

    sealed interface Command {
    }

    /** Discard {@code spans} ({@code pages} pages), then report {@code ticket} done to the manager. */
    record Queue(long ticket, List<HostSpan> spans, long pages) implements Command {
        Queue {
            spans = List.copyOf(spans);
        }
    }

    /** Run everything queued now, then answer the balloon with {@link BalloonActor.WorkerFlushed}. */
    record Flush() implements Command {
    }

    private enum Run implements Command {
        INSTANCE
    }

    private final ActorRef<DiscardManager.Command> manager;
    private final ActorRef<BalloonActor.Command> balloon;
    private final String name;
    private final List<Queue> queued = new ArrayList<>();
    private boolean runPending;
    /** When the last run finished ({@link System#nanoTime()}). */
    private long lastRunEnded;

    private DiscardWorker(ActorContext<Command> context, String name, ActorRef<DiscardManager.Command> manager,
            ActorRef<BalloonActor.Command> balloon) {
        super(context);
        this.name = name;
        this.manager = manager;
        this.balloon = balloon;
    }

    static Behavior<Command> create(String name, ActorRef<DiscardManager.Command> manager,
            ActorRef<BalloonActor.Command> balloon) {
        return Behaviors.setup(context -> new DiscardWorker(context, name, manager, balloon));
    }

    @Override
    public Receive<Command> createReceive() {
        return newReceiveBuilder()
                .onMessage(Queue.class, this::onQueue)
                .onMessageEquals(Run.INSTANCE, () -> {
                    runPending = false;
                    runQueued();
                    return this;
                })
                .onMessage(Flush.class, flush -> {
                    runQueued();
                    balloon.tell(new BalloonActor.WorkerFlushed());
                    return this;
                })
                .onSignal(PostStop.class, stop -> {
                    if (!queued.isEmpty()) {
                        getContext().getLog().debug("Balloon {} stops with {} pages of deferred discards queued; "
                                + "dropped", name, queued.stream().mapToLong(Queue::pages).sum());
                    }
                    return this;
                })
                .build();
    }

    private Behavior<Command> onQueue(Queue queue) {
        queued.add(queue);
        // Everything that arrives before this Run is taken by it: the longer a run takes, the more the next merges.
        if (!runPending) {
            runPending = true;
            getContext().getSelf().tell(Run.INSTANCE);
        }
        return this;
    }

    /** A span of a queued ticket. */
    private record Entry(int ticket, HostSpan span) {
    }

    private void runQueued() {
        if (queued.isEmpty()) {
            return;
        }
        Map<HostMemory, List<Entry>> byMemory = new IdentityHashMap<>();
        for (int t = 0; t < queued.size(); t++) {
            for (HostSpan span : queued.get(t).spans()) {
                byMemory.computeIfAbsent(span.memory(), m -> new ArrayList<>()).add(new Entry(t, span));
            }
        }
        long[] donePages = new long[queued.size()];
        int calls = 0;
        for (List<Entry> entries : byMemory.values()) {
            entries.sort(Comparator.comparingLong(e -> e.span().offset()));
            int from = 0;
            while (from < entries.size()) {
                HostSpan first = entries.get(from).span();
                long start = first.offset();
                long end = start + first.length();
                int to = from + 1;
                while (to < entries.size() && entries.get(to).span().offset() <= end) {
                    HostSpan next = entries.get(to).span();
                    end = Math.max(end, next.offset() + next.length());
                    to++;
                }
                boolean ok;
                try {
                    first.memory().discard(start, end - start);
                    calls++;
                    ok = true;
                } catch (RuntimeException e) {
                    getContext().getLog().error("Balloon {}: discard of {} failed: {}", name,
                            new HostSpan(first.memory(), start, end - start), e.toString());
                    ok = false;
                }
                if (ok) {
                    for (int i = from; i < to; i++) {
                        donePages[entries.get(i).ticket()] += entries.get(i).span().length() / FrameRuns.FRAME_SIZE;
                    }
                }
                from = to;
            }
        }
        long pages = 0;
        for (int t = 0; t < queued.size(); t++) {
            manager.tell(new DiscardManager.DiscardDone(queued.get(t).ticket(), donePages[t]));
            pages += donePages[t];
        }
        lastRunEnded = System.nanoTime();
        balloon.tell(new BalloonActor.DeferredDone(queued.size(), calls, pages, lastRunEnded));
        queued.clear();
    }
}
