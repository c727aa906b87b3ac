package io.actovisor.actors.balloon;

import io.actovisor.actors.discard.DiscardManager;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.HostSpan;
import java.time.Duration;
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
import org.apache.pekko.actor.typed.javadsl.TimerScheduler;

/**
 * A balloon's deferred discards, run on a thread of their own ({@link #DISPATCHER}) so that the {@code madvise} of
 * one inflate overlaps the guest's next buffers. The balloon queues what its {@link DiscardManager} allowed
 * ({@link Queue}, with the manager's ticket) and answers the inflate at once; the worker runs when
 * {@link #RUN_AT_PAGES} pages are queued, when one inflate of {@link #RUN_ALONE_PAGES} or more arrives, or
 * {@link #MAX_WAIT} after the first of fewer (rounded up to the scheduler's tick), or at a {@link Flush}. Each run
 * takes everything queued since the last one, merges the spans of all those inflates into contiguous host runs (the
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

    /**
     * Queued pages at which the worker runs at once (32 MiB): a guest's inflate buffers of 1 MiB (Linux's 256
     * frames) gather into one {@code madvise} of 32 MiB, which costs far less than 32 calls of 1 MiB.
     */
    static final long RUN_AT_PAGES = (32L << 20) / FrameRuns.FRAME_SIZE;
    /**
     * Pages of one inflate at which the worker runs at once, whatever else is queued (8 MiB): a call that size
     * already costs far more than a call's fixed part, so waiting for more saves next to nothing and only delays
     * the first {@code madvise} of a guest that inflates in large buffers (4096 frames, 16 MiB, each). Measured
     * with {@code InflateEndToEnd 15 plain 4096} (docs/benchmarks.md).
     */
    static final long RUN_ALONE_PAGES = (8L << 20) / FrameRuns.FRAME_SIZE;
    /** How long fewer queued pages wait for more before they are discarded anyway. */
    static final Duration MAX_WAIT = Duration.ofMillis(2);

    private final ActorRef<DiscardManager.Command> manager;
    private final ActorRef<BalloonActor.Command> balloon;
    private final String name;
    private final TimerScheduler<Command> timers;
    private final List<Queue> queued = new ArrayList<>();
    /** Pages of {@link #queued}. */
    private long queuedPages;
    /** When the last run finished ({@link System#nanoTime()}). */
    private long lastRunEnded;

    private DiscardWorker(ActorContext<Command> context, TimerScheduler<Command> timers, String name,
            ActorRef<DiscardManager.Command> manager, ActorRef<BalloonActor.Command> balloon) {
        super(context);
        this.timers = timers;
        this.name = name;
        this.manager = manager;
        this.balloon = balloon;
    }

    static Behavior<Command> create(String name, ActorRef<DiscardManager.Command> manager,
            ActorRef<BalloonActor.Command> balloon) {
        return Behaviors.setup(context -> Behaviors.withTimers(timers -> new DiscardWorker(context, timers, name,
                manager, balloon)));
    }

    @Override
    public Receive<Command> createReceive() {
        return newReceiveBuilder()
                .onMessage(Queue.class, this::onQueue)
                .onMessageEquals(Run.INSTANCE, () -> {
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
        queuedPages += queue.pages();
        if (queuedPages >= RUN_AT_PAGES || queue.pages() >= RUN_ALONE_PAGES) {
            runQueued();
        } else if (!timers.isTimerActive(Run.INSTANCE)) {
            timers.startSingleTimer(Run.INSTANCE, Run.INSTANCE, MAX_WAIT);
        }
        return this;
    }

    /** A span of a queued ticket. */
    private record Entry(int ticket, HostSpan span) {
    }

    private void runQueued() {
        timers.cancel(Run.INSTANCE);
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
        queuedPages = 0;
    }
}
