package io.actovisor.actors.balloon;

import static io.actovisor.actors.testing.ActorTree.PAGE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;

import io.actovisor.actors.discard.DiscardManager;
import io.actovisor.actors.discard.DiscardState;
import io.actovisor.actors.memory.AddressSpaceActor;
import io.actovisor.actors.testing.NativeTestKit;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.MemoryRegion;
import java.time.Duration;
import java.util.List;
import org.apache.pekko.actor.testkit.typed.javadsl.LoggingTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * The balloon's discard path at its edges, against a probe for its discard manager: which frames of a batch that
 * crosses a hole in guest RAM are refused, what a deferred grant counts as held, that a deflate of nothing and a
 * flush of nothing are answered at once, and that guest RAM is not removed under a discard still queued.
 */
class BalloonDiscardBoundariesTest {
    @RegisterExtension
    static final NativeTestKit KIT = new NativeTestKit();

    private static final Duration NOTHING = Duration.ofMillis(300);
    private static int balloons;

    /**
     * A balloon over 16 pages of host memory: guest frames 0-7 (region "low", host pages 0-7) and 12-15 (region
     * "high", host pages 8-11), with a hole at frames 8-11; its discard manager is a probe.
     */
    private record Setup(HostMemory ram, ActorRef<AddressSpaceActor.Command> space,
            ActorRef<BalloonActor.Command> balloon, TestProbe<DiscardManager.Command> manager)
            implements AutoCloseable {
        @Override
        public void close() {
            KIT.kit().stop(balloon);
            KIT.kit().stop(space);
            ram.close();
        }

        TestProbe<BalloonActor.InflateResult> inflate(boolean deferDiscard, long... frames) {
            TestProbe<BalloonActor.InflateResult> reply = KIT.kit().createTestProbe();
            balloon.tell(new BalloonActor.Inflate(frames, reply.ref(), deferDiscard));
            return reply;
        }

        DiscardManager.RequestDiscard request(List<AddressRange> ranges, long pages) {
            DiscardManager.RequestDiscard request = manager.expectMessageClass(DiscardManager.RequestDiscard.class);
            assertEquals(ranges, request.ranges());
            assertEquals(pages, request.pages());
            return request;
        }

        /** Bytes resident of host page {@code hostPage} (guest frames 0-7 are host pages 0-7, 12-15 are 8-11). */
        long resident(long hostPage) {
            return ram.residentBytes(AddressRange.of(ram.base().value() + hostPage * PAGE, PAGE));
        }
    }

    private static Setup setup() {
        String name = "boundaries" + balloons++;
        HostMemory ram = HostMemory.anonymous(name, 16 * PAGE);
        ActorRef<AddressSpaceActor.Command> space = KIT.kit().spawn(AddressSpaceActor.create(name + "-as"));
        TestProbe<AddressSpaceActor.CommitResult> committed = KIT.kit().createTestProbe();
        space.tell(new AddressSpaceActor.Commit(List.of(
                new AddressSpaceActor.AddRegion(MemoryRegion.ram("low", AddressRange.of(0, 8 * PAGE), ram, 0)),
                new AddressSpaceActor.AddRegion(MemoryRegion.ram("high", AddressRange.of(12 * PAGE, 4 * PAGE), ram,
                        8 * PAGE))), committed.ref()));
        committed.expectMessageClass(AddressSpaceActor.Committed.class);
        TestProbe<DiscardManager.Command> manager = KIT.kit().createTestProbe();
        ActorRef<BalloonActor.Command> balloon = KIT.kit().spawn(BalloonActor.create(name, space,
                BalloonSettings.DEFAULT, manager.ref()), name, BalloonActor.DISPATCHER);
        ram.populate(0, 16 * PAGE);
        return new Setup(ram, space, balloon, manager);
    }

    private static List<AddressRange> frames(long first, long count) {
        return List.of(AddressRange.of(first * PAGE, count * PAGE));
    }

    @Test
    void aBatchThatCrossesAHoleInGuestRamRefusesExactlyTheFramesInTheHole() {
        try (Setup s = setup()) {
            // Each frame is judged against its own section, not against the one the frame before it was in.
            TestProbe<BalloonActor.InflateResult> inflated = s.inflate(false, 6, 7, 8, 12, 11, 13, 16);
            DiscardManager.RequestDiscard request = s.request(List.of(AddressRange.of(6 * PAGE, 2 * PAGE),
                    AddressRange.of(12 * PAGE, 2 * PAGE)), 4);
            request.replyTo().tell(new DiscardManager.Held(request.ranges(), 4));
            assertEquals(new BalloonActor.InflateResult(4, 0, 0, 0, List.of(8L, 11L, 16L), 4),
                    inflated.receiveMessage());
        }
    }

    @Test
    void aDeferredGrantThatTakesFramesHeldBeforeAlongCountsNoneOfThisInflateAsHeld() {
        try (Setup s = setup()) {
            TestProbe<BalloonActor.InflateResult> first = s.inflate(true, 1, 2);
            s.request(frames(1, 2), 2).replyTo().tell(new DiscardManager.Held(frames(1, 2), 2));
            assertEquals(new BalloonActor.InflateResult(2, 0, 0, 0, List.of(), 2), first.receiveMessage());
            // The next inflate completes the block: the manager grants its frame and the two it held.
            TestProbe<BalloonActor.InflateResult> second = s.inflate(true, 3);
            s.request(frames(3, 1), 1).replyTo().tell(new DiscardManager.DiscardNow(4, frames(1, 3), true));
            assertEquals(new BalloonActor.InflateResult(1, 3, 0, 1, List.of(), 0), second.receiveMessage(),
                    "three pages queued in one run, none held");
            assertEquals(new DiscardManager.DiscardDone(4, 3), s.manager().expectMessageClass(
                    DiscardManager.DiscardDone.class)); // the worker ran it after its wait
            assertEquals(0, s.resident(1) + s.resident(2) + s.resident(3));
        }
    }

    @Test
    void aDeferredGrantOfPartOfAnInflateCountsTheRestAsHeld() {
        try (Setup s = setup()) {
            TestProbe<BalloonActor.InflateResult> inflated = s.inflate(true, 4, 5, 6);
            s.request(frames(4, 3), 3).replyTo().tell(new DiscardManager.DiscardNow(8, frames(4, 1), true));
            assertEquals(new BalloonActor.InflateResult(3, 1, 0, 1, List.of(), 2), inflated.receiveMessage());
            assertEquals(new DiscardManager.DiscardDone(8, 1), s.manager().expectMessageClass(
                    DiscardManager.DiscardDone.class));
            assertEquals(0, s.resident(4));
            assertEquals(2 * PAGE, s.resident(5) + s.resident(6), "held frames keep their memory");
        }
    }

    @Test
    void aFlushWithNothingQueuedIsAnsweredAtOnceAndTheBalloonGoesOn() {
        try (Setup s = setup()) {
            noErrorLogged(() -> {
                TestProbe<BalloonActor.Flushed> flushed = KIT.kit().createTestProbe();
                s.balloon().tell(new BalloonActor.Flush(flushed.ref()));
                assertEquals(new BalloonActor.Flushed(0), flushed.receiveMessage(), "no run has ended yet");
                TestProbe<BalloonActor.TargetResult> target = KIT.kit().createTestProbe();
                s.balloon().tell(new BalloonActor.SetTarget(PAGE, target.ref()));
                assertEquals(new BalloonActor.TargetSet(PAGE), target.receiveMessage());
            });
        }
    }

    /** Runs {@code body}; no actor logs an error meanwhile (not even a supervisor resuming a failed balloon). */
    private static void noErrorLogged(Runnable body) {
        LoggingTestKit.empty().withLogLevel(org.slf4j.event.Level.ERROR).withOccurrences(0)
                .expect(KIT.kit().system(), () -> {
                    body.run();
                    return null;
                });
    }

    @Test
    void aGrantWhoseRangeCrossesAHoleInGuestRamDiscardsTheRamOnEitherSide() {
        try (Setup s = setup()) {
            // The manager may grant frames it held from before: here frames 6 to 13, whose middle is no RAM.
            TestProbe<BalloonActor.InflateResult> inflated = s.inflate(false, 6);
            s.request(frames(6, 1), 1).replyTo().tell(new DiscardManager.DiscardNow(3, frames(6, 8)));
            assertEquals(new DiscardManager.DiscardDone(3, 4), s.manager().expectMessageClass(
                    DiscardManager.DiscardDone.class));
            assertEquals(new BalloonActor.InflateResult(1, 4, 0, 2, List.of(), 0), inflated.receiveMessage());
            assertEquals(0, s.resident(6) + s.resident(7) + s.resident(8) + s.resident(9), "frames 6, 7, 12, 13");
            assertEquals(PAGE, s.resident(10), "frame 14 was not granted");
        }
    }

    @Test
    void aReportOfOnlyRejectedChunksIsAnsweredWithoutAskingTheManager() {
        try (Setup s = setup()) {
            AddressRange unaligned = AddressRange.of(PAGE + 8, PAGE);
            AddressRange inTheHole = AddressRange.of(9 * PAGE, PAGE);
            noErrorLogged(() -> {
                TestProbe<BalloonActor.ReportResult> reported = KIT.kit().createTestProbe();
                s.balloon().tell(new BalloonActor.ReportFree(List.of(unaligned, inTheHole), reported.ref()));
                assertEquals(new BalloonActor.ReportResult(0, 0, List.of(unaligned, inTheHole), List.of()),
                        reported.receiveMessage());
                TestProbe<BalloonActor.TargetResult> target = KIT.kit().createTestProbe();
                s.balloon().tell(new BalloonActor.SetTarget(0, target.ref()));
                assertEquals(new BalloonActor.TargetSet(0), target.receiveMessage(), "the balloon goes on");
            });
            s.manager().expectNoMessage(Duration.ofMillis(100));
        }
    }

    @Test
    void aTargetFromZeroToAllGuestRamIsAcceptedAndOnePageMoreIsRefused() {
        try (Setup s = setup()) {
            TestProbe<BalloonActor.TargetResult> target = KIT.kit().createTestProbe();
            s.balloon().tell(new BalloonActor.SetTarget(12 * PAGE, target.ref()));
            assertEquals(new BalloonActor.TargetSet(12 * PAGE), target.receiveMessage(), "all 12 pages of RAM");
            s.balloon().tell(new BalloonActor.SetTarget(0, target.ref()));
            assertEquals(new BalloonActor.TargetSet(0), target.receiveMessage());
            s.balloon().tell(new BalloonActor.SetTarget(13 * PAGE, target.ref()));
            assertEquals(new BalloonActor.TargetRefused(13 * PAGE, "balloon target 53248 bytes must be a multiple "
                    + "of 4096 between 0 and the guest's RAM (49152 bytes)"), target.receiveMessage());
        }
    }

    @Test
    void theStatusCountsHoldersOfBothKinds() {
        try (Setup s = setup()) {
            TestProbe<BalloonActor.BalloonStatus> status = KIT.kit().createTestProbe();
            s.balloon().tell(new BalloonActor.GetStatus(status.ref()));
            DiscardState state = new DiscardState("m", 1, 2, List.of(
                    new DiscardState.Holder("vfio-group:g0", DiscardManager.HolderKind.UNCOORDINATED_DISABLED, false),
                    new DiscardState.Holder("vfio-group:g1", DiscardManager.HolderKind.COORDINATED_REQUIRED, false),
                    new DiscardState.Holder("vfio-group:g2", DiscardManager.HolderKind.COORDINATED_REQUIRED, false)),
                    2L << 20, true, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, List.of());
            s.manager().expectMessageClass(DiscardManager.GetState.class).replyTo().tell(state);
            BalloonActor.BalloonStatus answer = status.receiveMessage();
            assertEquals(3, answer.inhibitors());
            assertEquals(state.holderNames(), answer.holders());
        }
    }

    @Test
    void aDeflateOfFramesTheBalloonDoesNotHoldIsAnsweredWithoutAReclaimAndTheBalloonGoesOn() {
        try (Setup s = setup()) {
            noErrorLogged(() -> {
                TestProbe<BalloonActor.DeflateResult> deflated = KIT.kit().createTestProbe();
                s.balloon().tell(new BalloonActor.Deflate(new long[] {2, -1, 9}, deflated.ref()));
                assertEquals(new BalloonActor.DeflateResult(0, List.of(2L, -1L, 9L)), deflated.receiveMessage());
                TestProbe<BalloonActor.InflateResult> inflated = s.inflate(false, 2);
                s.request(frames(2, 1), 1).replyTo().tell(new DiscardManager.Held(frames(2, 1), 1));
                assertEquals(1, inflated.receiveMessage().pagesAccepted());
            });
            s.manager().expectNoMessage(Duration.ofMillis(100)); // no reclaim for the first deflate
        }
    }

    @Test
    void guestRamIsRemovedOnlyAfterTheDiscardQueuedInItRan() throws Exception {
        try (Setup s = setup()) {
            TestProbe<AddressSpaceActor.CommitResult> committed = KIT.kit().createTestProbe();
            TestProbe<BalloonActor.InflateResult> later;
            try (DiscardThreadBlocker blocker = new DiscardThreadBlocker(KIT.kit())) {
                TestProbe<BalloonActor.InflateResult> inflated = s.inflate(true, 13);
                s.request(frames(13, 1), 1).replyTo().tell(new DiscardManager.DiscardNow(2, frames(13, 1), true));
                assertEquals(1, inflated.receiveMessage().pagesDiscarded(), "answered, the discard queued");
                s.space().tell(new AddressSpaceActor.Commit(List.of(new AddressSpaceActor.RemoveRegion("high")),
                        committed.ref()));
                committed.expectNoMessage(NOTHING); // the balloon has not let the region go
                assertEquals(PAGE, s.resident(9), "the queued discard has not run");
                later = s.inflate(false, 5); // waits behind the removal
                s.manager().expectNoMessage(NOTHING);
            }
            noErrorLogged(() -> {
                assertEquals(new DiscardManager.DiscardDone(2, 1), s.manager().expectMessageClass(
                        DiscardManager.DiscardDone.class));
                assertInstanceOf(AddressSpaceActor.Committed.class, committed.receiveMessage());
                assertEquals(0, s.resident(9), "discarded before the region went");
                s.request(frames(5, 1), 1).replyTo().tell(new DiscardManager.Held(frames(5, 1), 1));
            });
            assertEquals(new BalloonActor.InflateResult(1, 0, 0, 0, List.of(), 1), later.receiveMessage());
            // The region is gone for the balloon too: its frames are refused now.
            TestProbe<BalloonActor.InflateResult> after = s.inflate(false, 14);
            assertEquals(new BalloonActor.InflateResult(0, 0, 0, 0, List.of(14L)), after.receiveMessage());
        }
    }
}
