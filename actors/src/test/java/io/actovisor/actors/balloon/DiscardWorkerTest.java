package io.actovisor.actors.balloon;

import static io.actovisor.actors.testing.ActorTree.PAGE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.actors.discard.DiscardManager;
import io.actovisor.actors.testing.NativeTestKit;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.HostSpan;
import io.actovisor.memory.sys.Errno;
import io.actovisor.memory.sys.ForwardingPosix;
import io.actovisor.memory.sys.NativeException;
import io.actovisor.memory.sys.Posix;
import java.time.Duration;
import java.util.List;
import org.apache.pekko.actor.testkit.typed.javadsl.LoggingTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * The balloon's {@link DiscardWorker} alone, between a probe for its discard manager and one for its balloon: when
 * it runs (at a flush, at {@link DiscardWorker#RUN_AT_PAGES} queued pages, or after its short wait), what one run
 * discards (the spans of all queued tickets, sorted and merged per host memory block), and what it reports (one
 * {@link DiscardManager.DiscardDone} per ticket with the pages really discarded, then one
 * {@link BalloonActor.DeferredDone} for the run). Where the order of messages decides the outcome, the worker's one
 * thread is held by a blocker while the messages are queued, so "queued together" is a state of the test, not a
 * race with the worker's timer.
 */
class DiscardWorkerTest {
    @RegisterExtension
    static final NativeTestKit KIT = new NativeTestKit();

    private static final Duration NOTHING = Duration.ofMillis(200);
    private static final long RUN = DiscardWorker.RUN_AT_PAGES;
    private static final long ALONE = DiscardWorker.RUN_ALONE_PAGES;
    private static int workers;

    /** A worker on its own dispatcher, reporting to two probes. */
    private record Worker(ActorRef<DiscardWorker.Command> ref, TestProbe<DiscardManager.Command> manager,
            TestProbe<BalloonActor.Command> balloon) {
        void queue(long ticket, long pages, HostSpan... spans) {
            ref.tell(new DiscardWorker.Queue(ticket, List.of(spans), pages));
        }

        BalloonActor.DeferredDone deferredDone() {
            return balloon.expectMessageClass(BalloonActor.DeferredDone.class);
        }

        /** The manager hears {@code ticket} done with {@code pages} pages, next. */
        void done(long ticket, long pages) {
            assertEquals(new DiscardManager.DiscardDone(ticket, pages),
                    manager.expectMessageClass(DiscardManager.DiscardDone.class));
        }

        void stop() {
            KIT.kit().stop(ref);
        }
    }

    private static Worker worker() {
        TestProbe<DiscardManager.Command> manager = KIT.kit().createTestProbe();
        TestProbe<BalloonActor.Command> balloon = KIT.kit().createTestProbe();
        String name = "worker" + workers++;
        ActorRef<DiscardWorker.Command> ref = KIT.kit().spawn(DiscardWorker.create(name, manager.ref(),
                balloon.ref()), name, DiscardWorker.DISPATCHER);
        return new Worker(ref, manager, balloon);
    }

    private static HostSpan frames(HostMemory memory, long first, long count) {
        return new HostSpan(memory, first * PAGE, count * PAGE);
    }

    private static long resident(HostMemory memory, long first, long count) {
        return memory.residentBytes(AddressRange.of(memory.base().value() + first * PAGE, count * PAGE));
    }

    /** The run's counts, without its end time. */
    private static void assertRun(int tickets, int calls, long pages, BalloonActor.DeferredDone done) {
        assertEquals(List.of(tickets, calls, pages), List.of(done.tickets(), done.calls(), done.pages()),
                "tickets, calls, pages of the run");
        assertTrue(done.endedNanos() != 0);
    }

    @Test
    void aFlushOfAnEmptyQueueIsAnsweredAndReportsNoRunAndTheWorkerGoesOn() {
        try (HostMemory memory = HostMemory.anonymous("worker-empty", 16 * PAGE)) {
            Worker w = worker();
            w.ref().tell(new DiscardWorker.Flush());
            assertEquals(new BalloonActor.WorkerFlushed(), w.balloon().receiveMessage(),
                    "the flush is answered, and nothing ran before it");
            w.manager().expectNoMessage(NOTHING);
            w.balloon().expectNoMessage(NOTHING);
            w.queue(9, 1, frames(memory, 1, 1));
            w.done(9, 1);
            assertRun(1, 1, 1, w.deferredDone());
            w.stop();
        }
    }

    @Test
    void aFlushRunsWhatIsQueuedBeforeItIsAnswered() throws Exception {
        try (HostMemory memory = HostMemory.anonymous("worker-flush", 16 * PAGE)) {
            memory.populate(0, 16 * PAGE);
            Worker w = worker();
            try (DiscardThreadBlocker blocker = new DiscardThreadBlocker(KIT.kit())) {
                w.queue(5, 2, frames(memory, 2, 2));
                w.ref().tell(new DiscardWorker.Flush()); // queued behind it, before the worker's wait can end
            }
            w.done(5, 2);
            assertRun(1, 1, 2, w.deferredDone());
            assertEquals(new BalloonActor.WorkerFlushed(), w.balloon().receiveMessage(), "after the run, not before");
            assertEquals(0, resident(memory, 2, 2));
            assertEquals(PAGE, resident(memory, 4, 1));
            w.stop();
        }
    }

    @Test
    void aFlushAfterTheWaitRanTheQueueRunsNothingAgain() throws Exception {
        try (HostMemory memory = HostMemory.anonymous("worker-waited", 16 * PAGE)) {
            Worker w = worker();
            w.queue(3, 1, frames(memory, 7, 1));
            // No flush: the worker's wait for more ends and the ticket is done.
            w.done(3, 1);
            assertRun(1, 1, 1, w.deferredDone());
            w.ref().tell(new DiscardWorker.Flush());
            assertEquals(new BalloonActor.WorkerFlushed(), w.balloon().receiveMessage());
            w.manager().expectNoMessage(NOTHING); // ticket 3 is not reported a second time
            w.stop();
        }
    }

    @Test
    void aQueueOfExactlyTheRunSizeRunsAtOnceWithoutWaitingForMore() throws Exception {
        try (HostMemory memory = HostMemory.anonymous("worker-run-size", (RUN + 1) * PAGE)) {
            Worker w = worker();
            try (DiscardThreadBlocker blocker = new DiscardThreadBlocker(KIT.kit())) {
                w.queue(1, RUN, frames(memory, 0, RUN));
                w.queue(2, 1, frames(memory, RUN, 1)); // already queued when the first is taken
            }
            w.done(1, RUN);
            assertRun(1, 1, RUN, w.deferredDone());
            w.done(2, 1); // after the wait: the first run did not wait for it
            assertRun(1, 1, 1, w.deferredDone());
            w.stop();
        }
    }

    @Test
    void aQueueOnePageUnderTheRunSizeWaitsAndThePageThatCompletesItRunsAll() throws Exception {
        try (HostMemory memory = HostMemory.anonymous("worker-under", (RUN + 2) * PAGE)) {
            Worker w = worker();
            // RUN - 1 pages in five inflates, each under the size that runs alone.
            long piece = ALONE - 1;
            long last = RUN - 1 - 4 * piece;
            assertTrue(last > 0 && last < ALONE);
            try (DiscardThreadBlocker blocker = new DiscardThreadBlocker(KIT.kit())) {
                for (int i = 0; i < 4; i++) {
                    w.queue(1 + i, piece, frames(memory, i * piece, piece));
                }
                w.queue(5, last, frames(memory, 4 * piece, last));
                w.queue(6, 1, frames(memory, RUN - 1, 1));
                // After the run the count starts again from zero: these two wait for the timer together.
                w.queue(7, 1, frames(memory, RUN, 1));
                w.queue(8, 1, frames(memory, RUN + 1, 1));
            }
            for (int i = 0; i < 4; i++) {
                w.done(1 + i, piece);
            }
            w.done(5, last);
            w.done(6, 1);
            assertRun(6, 1, RUN, w.deferredDone());
            w.done(7, 1);
            w.done(8, 1);
            assertRun(2, 1, 2, w.deferredDone());
            w.manager().expectNoMessage(NOTHING);
            w.stop();
        }
    }

    @Test
    void oneInflateOfTheAloneSizeRunsAtOnceAndOnePageLessWaits() throws Exception {
        try (HostMemory memory = HostMemory.anonymous("worker-alone", (2 * ALONE + 2) * PAGE)) {
            Worker w = worker();
            try (DiscardThreadBlocker blocker = new DiscardThreadBlocker(KIT.kit())) {
                w.queue(1, ALONE, frames(memory, 0, ALONE));
                w.queue(2, 1, frames(memory, ALONE, 1)); // already queued when the first is taken
            }
            w.done(1, ALONE);
            assertRun(1, 1, ALONE, w.deferredDone());
            w.done(2, 1); // after the wait: the first run did not wait for it
            assertRun(1, 1, 1, w.deferredDone());
            try (DiscardThreadBlocker blocker = new DiscardThreadBlocker(KIT.kit())) {
                w.queue(3, ALONE - 1, frames(memory, ALONE + 1, ALONE - 1));
                w.queue(4, 1, frames(memory, 2 * ALONE, 1));
            }
            w.done(3, ALONE - 1); // one page less waited, and the next inflate joined its run
            w.done(4, 1);
            assertRun(2, 1, ALONE, w.deferredDone());
            w.stop();
        }
    }

    @Test
    void ticketsOutOfAddressOrderAreDiscardedInMergedRunsAndEachIsReportedOnce() throws Exception {
        try (HostMemory a = HostMemory.anonymous("worker-order-a", 16 * PAGE);
                HostMemory b = HostMemory.anonymous("worker-order-b", 16 * PAGE)) {
            a.populate(0, 16 * PAGE);
            b.populate(0, 16 * PAGE);
            Worker w = worker();
            try (DiscardThreadBlocker blocker = new DiscardThreadBlocker(KIT.kit())) {
                w.queue(10, 1, frames(a, 8, 1));
                w.queue(11, 4, frames(a, 4, 4)); // below the first ticket's frame, and its neighbour
                w.queue(12, 2, frames(a, 12, 1), frames(b, 3, 1)); // a span in another block
                w.ref().tell(new DiscardWorker.Flush());
            }
            w.done(10, 1); // in the order they were queued, each once
            w.done(11, 4);
            w.done(12, 2);
            assertRun(3, 3, 7, w.deferredDone()); // frames 4-8 of a in one call, 12 of a, 3 of b
            assertEquals(new BalloonActor.WorkerFlushed(), w.balloon().receiveMessage());
            w.manager().expectNoMessage(NOTHING);
            assertEquals(0, resident(a, 4, 5), "frames 4 to 8 are all discarded");
            assertEquals(0, resident(a, 12, 1));
            assertEquals(0, resident(b, 3, 1));
            assertEquals(3 * PAGE, resident(a, 9, 3), "frames between the runs are kept");
            assertEquals(PAGE, resident(a, 3, 1));
            assertEquals(PAGE, resident(b, 4, 1));
            w.stop();
        }
    }

    /** Host memory whose {@code madvise} fails with EINVAL on any range that includes {@code failAtOffset}. */
    private static HostMemory failingAt(String name, long pages, long failAtOffset) {
        long[] base = new long[1];
        Posix posix = new ForwardingPosix(Posix.system()) {
            @Override
            public void madvise(long addr, long length, int advice) {
                long at = base[0] + failAtOffset;
                if (base[0] != 0 && addr <= at && at < addr + length) {
                    throw new NativeException("madvise", Errno.EINVAL, "injected by the test");
                }
                super.madvise(addr, length, advice);
            }
        };
        HostMemory memory = HostMemory.anonymous(posix, name, pages * PAGE);
        base[0] = memory.base().value();
        return memory;
    }

    @Test
    void aDiscardThatFailsIsLoggedAndCountsNoPagesForItsTicketsWhileTheOthersCount() throws Exception {
        try (HostMemory memory = failingAt("worker-failing", 16 * PAGE, 2 * PAGE)) {
            memory.writeLong(memory.base().checkedAdd(2 * PAGE), 21);
            memory.writeLong(memory.base().checkedAdd(6 * PAGE), 61);
            Worker w = worker();
            LoggingTestKit.error("discard of worker-failing+0x1000[0x2000] failed").expect(KIT.kit().system(),
                    () -> {
                        try (DiscardThreadBlocker blocker = new DiscardThreadBlocker(KIT.kit())) {
                            w.queue(1, 1, frames(memory, 1, 1));
                            w.queue(2, 1, frames(memory, 2, 1)); // merged with frame 1: that call fails
                            w.queue(3, 2, frames(memory, 6, 2));
                            w.ref().tell(new DiscardWorker.Flush());
                        } catch (InterruptedException e) {
                            throw new AssertionError(e);
                        }
                        w.done(1, 0);
                        w.done(2, 0);
                        w.done(3, 2);
                        return null;
                    });
            assertRun(3, 1, 2, w.deferredDone());
            assertEquals(new BalloonActor.WorkerFlushed(), w.balloon().receiveMessage());
            assertEquals(21, memory.readLong(memory.base().checkedAdd(2 * PAGE)), "not discarded");
            assertEquals(0, memory.readLong(memory.base().checkedAdd(6 * PAGE)), "discarded");
            w.stop();
        }
    }
}
