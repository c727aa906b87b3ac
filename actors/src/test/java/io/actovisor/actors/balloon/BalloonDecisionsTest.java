package io.actovisor.actors.balloon;

import static io.actovisor.actors.testing.ActorTree.PAGE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;

import io.actovisor.actors.discard.DiscardManager;
import io.actovisor.actors.discard.DiscardState;
import io.actovisor.actors.events.ActovisorEvent;
import io.actovisor.actors.memory.AddressSpaceActor;
import io.actovisor.actors.testing.NativeTestKit;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.GuestAddress;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.MemoryRegion;
import java.time.Duration;
import java.util.List;
import org.apache.pekko.actor.testkit.typed.javadsl.LoggingTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.eventstream.EventStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * The balloon against a probe for its discard manager, one answer at a time: a granted discard runs and is reported
 * done with its ticket and page count; a refused one leaves the pages in place and is counted and published as
 * skipped; with {@code unsafe-ignore-inhibitor} a refused one runs anyway and is counted as unsafe; every change of
 * target or size is published as {@link ActovisorEvent.BalloonChanged}.
 */
class BalloonDecisionsTest {
    private static final List<AddressRange> FRAMES_1_2 = List.of(AddressRange.of(PAGE, 2 * PAGE));
    @RegisterExtension
    static final NativeTestKit KIT = new NativeTestKit();
    private static int balloons;

    /** A balloon over 16 pages of RAM at guest address 0, asking {@code manager}; page 1 and 2 hold 77 and 78. */
    private record Setup(HostMemory ram, ActorRef<BalloonActor.Command> balloon, TestProbe<DiscardManager.Command>
            manager, String name) implements AutoCloseable {
        @Override
        public void close() {
            KIT.kit().stop(balloon);
            ram.close();
        }

        long page(int frame) {
            return ram.readLong(ram.base().checkedAdd(frame * PAGE));
        }

        BalloonActor.BalloonStatus status() {
            TestProbe<BalloonActor.BalloonStatus> reply = KIT.kit().createTestProbe();
            balloon.tell(new BalloonActor.GetStatus(reply.ref()));
            manager.expectMessageClass(DiscardManager.GetState.class).replyTo().tell(new DiscardState(name, 1, 0,
                    List.of(new DiscardState.Holder("vfio-group:g0", DiscardManager.HolderKind.UNCOORDINATED_DISABLED,
                            false)), 2L << 20, false, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, List.of()));
            return reply.receiveMessage();
        }

        /** Inflates frames 1 and 2; the manager is asked for exactly them. */
        TestProbe<BalloonActor.InflateResult> inflate() {
            TestProbe<BalloonActor.InflateResult> reply = KIT.kit().createTestProbe();
            balloon.tell(new BalloonActor.Inflate(new long[] {1, 2}, reply.ref()));
            return reply;
        }

        DiscardManager.RequestDiscard request() {
            DiscardManager.RequestDiscard request = manager.expectMessageClass(DiscardManager.RequestDiscard.class);
            assertEquals(FRAMES_1_2, request.ranges());
            assertEquals(2, request.pages());
            return request;
        }
    }

    private static Setup setup(BalloonSettings settings) {
        String name = "decisions" + balloons++;
        HostMemory ram = HostMemory.anonymous(name, 16 * PAGE);
        ActorRef<AddressSpaceActor.Command> space = KIT.kit().spawn(AddressSpaceActor.create(name + "-as"));
        TestProbe<AddressSpaceActor.CommitResult> committed = KIT.kit().createTestProbe();
        space.tell(new AddressSpaceActor.Commit(List.of(new AddressSpaceActor.AddRegion(
                MemoryRegion.ram("ram", GuestAddress.ZERO, ram))), committed.ref()));
        committed.expectMessageClass(AddressSpaceActor.Committed.class);
        TestProbe<DiscardManager.Command> manager = KIT.kit().createTestProbe();
        ActorRef<BalloonActor.Command> balloon = KIT.kit().spawn(BalloonActor.create(name, space, settings,
                manager.ref()),
                name, BalloonActor.DISPATCHER);
        ram.writeLong(ram.base().checkedAdd(PAGE), 77);
        ram.writeLong(ram.base().checkedAdd(2 * PAGE), 78);
        return new Setup(ram, balloon, manager, name);
    }

    private static TestProbe<ActovisorEvent> events(Class<? extends ActovisorEvent> type) {
        TestProbe<ActovisorEvent> probe = KIT.kit().createTestProbe();
        @SuppressWarnings("unchecked")
        Class<ActovisorEvent> cls = (Class<ActovisorEvent>) type;
        KIT.kit().system().eventStream().tell(new EventStream.Subscribe<>(cls, probe.ref()));
        return probe;
    }

    /** The next event of {@code type} about balloon {@code name} (other tests' balloons publish too). */
    private static <T extends ActovisorEvent> T next(TestProbe<ActovisorEvent> probe, Class<T> type, String name) {
        while (true) {
            ActovisorEvent event = probe.receiveMessage();
            String balloon = event instanceof ActovisorEvent.BalloonChanged c ? c.balloon()
                    : event instanceof ActovisorEvent.DiscardSkipped d ? d.balloon()
                    : event instanceof ActovisorEvent.UnsafeDiscard u ? u.balloon() : "";
            if (type.isInstance(event) && name.equals(balloon)) {
                return type.cast(event);
            }
        }
    }

    @Test
    void aGrantedDiscardRunsAndIsReportedDoneWithItsTicketAndPages() {
        try (Setup s = setup(BalloonSettings.DEFAULT)) {
            TestProbe<BalloonActor.InflateResult> inflated = s.inflate();
            s.request().replyTo().tell(new DiscardManager.DiscardNow(7, FRAMES_1_2));
            assertEquals(new DiscardManager.DiscardDone(7, 2), s.manager().expectMessageClass(
                    DiscardManager.DiscardDone.class));
            assertEquals(new BalloonActor.InflateResult(2, 2, 0, 1, List.of(), 0), inflated.receiveMessage());
            assertEquals(0, s.page(1), "discarded: the page reads as zero");
            assertEquals(0, s.page(2));
            BalloonActor.BalloonStatus status = s.status();
            assertEquals(1, status.discards());
            assertEquals(2, status.pagesDiscarded());
            assertEquals(0, status.skippedDiscards() + status.pagesSkipped() + status.unsafeDiscards());
        }
    }

    @Test
    void aRefusedDiscardLeavesThePagesAndIsCountedAndPublishedAsSkipped() {
        TestProbe<ActovisorEvent> skipped = events(ActovisorEvent.DiscardSkipped.class);
        try (Setup s = setup(BalloonSettings.DEFAULT)) {
            TestProbe<BalloonActor.InflateResult> inflated = s.inflate();
            DiscardManager.RequestDiscard request = s.request();
            // A refusal is the rules working, not a failure: no error is logged (a manager that did not answer is).
            LoggingTestKit.error("skips the discard").withOccurrences(0).expect(KIT.kit().system(), () -> {
                request.replyTo().tell(new DiscardManager.Refused(List.of("vfio-group:g0")));
                assertEquals(new BalloonActor.InflateResult(2, 0, 2, 0, List.of(), 0), inflated.receiveMessage());
                return null;
            });
            assertEquals(new ActovisorEvent.DiscardSkipped(s.name(), FRAMES_1_2, 2, List.of("vfio-group:g0")),
                    next(skipped, ActovisorEvent.DiscardSkipped.class, s.name()));
            assertEquals(77, s.page(1), "a device may still read the page: it keeps its contents");
            assertEquals(78, s.page(2));
            s.manager().expectNoMessage(Duration.ofMillis(100));
            BalloonActor.BalloonStatus status = s.status();
            assertEquals(2 * PAGE, status.actualBytes(), "the guest gave the frames up all the same");
            assertEquals(1, status.skippedDiscards());
            assertEquals(2, status.pagesSkipped());
            assertEquals(0, status.discards() + status.pagesDiscarded() + status.unsafeDiscards());
            assertEquals(List.of("vfio-group:g0"), status.holders());
        }
    }

    @Test
    void withUnsafeIgnoreInhibitorARefusedDiscardRunsAndIsCountedAsUnsafe() {
        TestProbe<ActovisorEvent> unsafe = events(ActovisorEvent.UnsafeDiscard.class);
        try (Setup s = setup(new BalloonSettings(true, Duration.ofSeconds(10)))) {
            TestProbe<BalloonActor.InflateResult> inflated = s.inflate();
            s.request().replyTo().tell(new DiscardManager.Refused(List.of("vfio-group:g0")));
            assertEquals(new BalloonActor.InflateResult(2, 2, 0, 1, List.of(), 0), inflated.receiveMessage());
            assertEquals(new ActovisorEvent.UnsafeDiscard(s.name(), FRAMES_1_2, 2, List.of("vfio-group:g0")),
                    next(unsafe, ActovisorEvent.UnsafeDiscard.class, s.name()));
            assertEquals(0, s.page(1));
            BalloonActor.BalloonStatus status = s.status();
            assertEquals(1, status.discards());
            assertEquals(2, status.pagesDiscarded());
            assertEquals(1, status.unsafeDiscards());
            assertEquals(0, status.skippedDiscards() + status.pagesSkipped());
        }
    }

    @Test
    void everyChangeOfTargetOrSizeIsPublished() {
        TestProbe<ActovisorEvent> changes = events(ActovisorEvent.BalloonChanged.class);
        try (Setup s = setup(BalloonSettings.DEFAULT)) {
            TestProbe<BalloonActor.TargetResult> target = KIT.kit().createTestProbe();
            s.balloon().tell(new BalloonActor.SetTarget(4 * PAGE, target.ref()));
            assertEquals(new BalloonActor.TargetSet(4 * PAGE), target.receiveMessage());
            assertEquals(new ActovisorEvent.BalloonChanged(s.name(), 4 * PAGE, 0),
                    next(changes, ActovisorEvent.BalloonChanged.class, s.name()));

            TestProbe<BalloonActor.InflateResult> inflated = s.inflate();
            s.request().replyTo().tell(new DiscardManager.Held(FRAMES_1_2, 2));
            assertEquals(new BalloonActor.InflateResult(2, 0, 0, 0, List.of(), 2), inflated.receiveMessage());
            assertEquals(new ActovisorEvent.BalloonChanged(s.name(), 4 * PAGE, 2 * PAGE),
                    next(changes, ActovisorEvent.BalloonChanged.class, s.name()));

            TestProbe<BalloonActor.DeflateResult> deflated = KIT.kit().createTestProbe();
            s.balloon().tell(new BalloonActor.Deflate(new long[] {2}, deflated.ref()));
            assertEquals(new ActovisorEvent.BalloonChanged(s.name(), 4 * PAGE, PAGE),
                    next(changes, ActovisorEvent.BalloonChanged.class, s.name()));
            assertInstanceOf(DiscardManager.Reclaim.class, s.manager().receiveMessage()).replyTo()
                    .tell(new DiscardManager.Reclaimed(0));
            assertEquals(1, deflated.receiveMessage().pagesReturned());
        }
    }

    @Test
    void frameZeroIsAFrameLikeAnyOther() {
        try (Setup s = setup(BalloonSettings.DEFAULT)) {
            TestProbe<BalloonActor.InflateResult> inflated = KIT.kit().createTestProbe();
            s.balloon().tell(new BalloonActor.Inflate(new long[] {0, -1}, inflated.ref()));
            DiscardManager.RequestDiscard request = s.manager().expectMessageClass(
                    DiscardManager.RequestDiscard.class);
            assertEquals(List.of(AddressRange.of(0, PAGE)), request.ranges());
            request.replyTo().tell(new DiscardManager.Held(request.ranges(), 1));
            assertEquals(new BalloonActor.InflateResult(1, 0, 0, 0, List.of(-1L), 1), inflated.receiveMessage());
            TestProbe<BalloonActor.DeflateResult> deflated = KIT.kit().createTestProbe();
            s.balloon().tell(new BalloonActor.Deflate(new long[] {0, -1}, deflated.ref()));
            assertInstanceOf(DiscardManager.Reclaim.class, s.manager().receiveMessage()).replyTo()
                    .tell(new DiscardManager.Reclaimed(0));
            assertEquals(new BalloonActor.DeflateResult(1, List.of(-1L)), deflated.receiveMessage());
        }
    }

    @Test
    void aGrantedFreePageReportDiscardsItsChunksAndAChunkPastTheEndOfRamIsRejected() {
        try (Setup s = setup(BalloonSettings.DEFAULT)) {
            AddressRange pastTheEnd = AddressRange.of(14 * PAGE, 4 * PAGE);
            TestProbe<BalloonActor.ReportResult> reported = KIT.kit().createTestProbe();
            s.balloon().tell(new BalloonActor.ReportFree(List.of(FRAMES_1_2.get(0), pastTheEnd), reported.ref()));
            DiscardManager.ReportFreePages report = s.manager().expectMessageClass(
                    DiscardManager.ReportFreePages.class);
            assertEquals(FRAMES_1_2, report.ranges());
            assertEquals(2, report.pages());
            report.replyTo().tell(new DiscardManager.DiscardNow(9, FRAMES_1_2));
            assertEquals(new DiscardManager.DiscardDone(9, 2), s.manager().expectMessageClass(
                    DiscardManager.DiscardDone.class));
            assertEquals(new BalloonActor.ReportResult(2 * PAGE, 0, List.of(pastTheEnd), List.of()),
                    reported.receiveMessage());
            assertEquals(0, s.page(1));
        }
    }

    @Test
    void aDeflateTheManagerCannotMapAgainKeepsTheFramesInTheBalloon() {
        TestProbe<ActovisorEvent> changes = events(ActovisorEvent.BalloonChanged.class);
        try (Setup s = setup(BalloonSettings.DEFAULT)) {
            TestProbe<BalloonActor.InflateResult> inflated = s.inflate();
            s.request().replyTo().tell(new DiscardManager.Held(FRAMES_1_2, 2));
            inflated.receiveMessage();
            TestProbe<BalloonActor.DeflateResult> deflated = KIT.kit().createTestProbe();
            LoggingTestKit.error("keeps 1 deflated frames: EBUSY").expect(KIT.kit().system(), () -> {
                s.balloon().tell(new BalloonActor.Deflate(new long[] {2, 9}, deflated.ref()));
                assertInstanceOf(DiscardManager.Reclaim.class, s.manager().receiveMessage()).replyTo()
                        .tell(new DiscardManager.ReclaimFailed("EBUSY"));
                assertEquals(new BalloonActor.DeflateResult(0, List.of(9L, 2L)), deflated.receiveMessage(),
                        "the guest is not told it may use frame 2");
                return null;
            });
            assertEquals(2 * PAGE, s.status().actualBytes());
            long last = -1;
            for (int i = 0; i < 3; i++) { // size 2 pages, then 1 (deflated), then 2 again (kept)
                last = next(changes, ActovisorEvent.BalloonChanged.class, s.name()).actualBytes();
            }
            assertEquals(2 * PAGE, last);
        }
    }

    @Test
    void whileTheManagerDecidesOrMapsAgainEveryOtherCommandWaits() {
        try (Setup s = setup(BalloonSettings.DEFAULT)) {
            TestProbe<BalloonActor.InflateResult> inflated = s.inflate();
            DiscardManager.RequestDiscard request = s.request();
            // No frame of an inflate can be deflated (and reused) before its discard has run.
            TestProbe<BalloonActor.DeflateResult> deflated = KIT.kit().createTestProbe();
            s.balloon().tell(new BalloonActor.Deflate(new long[] {1}, deflated.ref()));
            TestProbe<BalloonActor.ReportResult> reported = KIT.kit().createTestProbe();
            s.balloon().tell(new BalloonActor.ReportFree(List.of(AddressRange.of(8 * PAGE, PAGE)), reported.ref()));
            s.manager().expectNoMessage(Duration.ofMillis(100));
            request.replyTo().tell(new DiscardManager.Held(FRAMES_1_2, 2));
            assertEquals(2, inflated.receiveMessage().pagesAccepted());
            DiscardManager.Reclaim reclaim = assertInstanceOf(DiscardManager.Reclaim.class,
                    s.manager().receiveMessage());
            assertEquals(List.of(AddressRange.of(PAGE, PAGE)), reclaim.ranges());
            // While it maps again, the report waits too.
            s.manager().expectNoMessage(Duration.ofMillis(100));
            reclaim.replyTo().tell(new DiscardManager.Reclaimed(0));
            assertEquals(new BalloonActor.DeflateResult(1, List.of()), deflated.receiveMessage());
            DiscardManager.ReportFreePages report = s.manager().expectMessageClass(
                    DiscardManager.ReportFreePages.class);
            TestProbe<BalloonActor.InflateResult> second = KIT.kit().createTestProbe();
            s.balloon().tell(new BalloonActor.Inflate(new long[] {3}, second.ref()));
            s.manager().expectNoMessage(Duration.ofMillis(100));
            report.replyTo().tell(new DiscardManager.Refused(List.of("vfio-group:g0")));
            assertEquals(new BalloonActor.ReportResult(0, PAGE, List.of(), List.of("vfio-group:g0")),
                    reported.receiveMessage());
            s.manager().expectMessageClass(DiscardManager.RequestDiscard.class);
        }
    }

    @Test
    void framesOutsideRamOrNotInflatedAreAnsweredWithoutAskingTheManager() {
        try (Setup s = setup(BalloonSettings.DEFAULT)) {
            TestProbe<BalloonActor.InflateResult> inflated = KIT.kit().createTestProbe();
            s.balloon().tell(new BalloonActor.Inflate(new long[] {16, 1L << 40}, inflated.ref()));
            assertEquals(new BalloonActor.InflateResult(0, 0, 0, 0, List.of(16L, 1L << 40)),
                    inflated.receiveMessage());
            TestProbe<BalloonActor.DeflateResult> deflated = KIT.kit().createTestProbe();
            s.balloon().tell(new BalloonActor.Deflate(new long[] {3}, deflated.ref()));
            assertEquals(new BalloonActor.DeflateResult(0, List.of(3L)), deflated.receiveMessage());
            s.manager().expectNoMessage(Duration.ofMillis(100));
        }
    }
}
