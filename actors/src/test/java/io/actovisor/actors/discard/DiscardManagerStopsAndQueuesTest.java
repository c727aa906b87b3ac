package io.actovisor.actors.discard;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;

import io.actovisor.memory.AddressRange;
import io.actovisor.memory.testing.TestTimeouts;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;

/**
 * What the discard manager's callers rely on when the actors around it stop or ask at the wrong moment: a pin owner
 * that stops releases only its own draining holders and, mid-round, counts as having unmapped; a late answer from it
 * changes nothing; a stopped requester voids only its own tickets; a pin owner that does not confirm is asked again;
 * requests that arrive during a block round wait and are served in order; a restore with no container left answers
 * at once; a holder that leaves before its registration was answered is never told it is registered.
 */
class DiscardManagerStopsAndQueuesTest {
    private static final ActorTestKit KIT = ActorTestKit.create();
    private static final long FRAME = 4096;
    private static final long BLOCK = 4 * FRAME;
    private static final Duration SETTLE = TestTimeouts.scaled(Duration.ofSeconds(3));
    private static int managers;

    @AfterAll
    static void stop() {
        KIT.shutdownTestKit();
    }

    private static ActorRef<DiscardManager.Command> manager(Duration drainTimeout) {
        return KIT.spawn(DiscardManager.create("m" + managers, DiscardManager.Settings.withDrainTimeout(drainTimeout)
                .withBlockSize(BLOCK), Optional.empty()), "m" + managers++);
    }

    private static DiscardState state(ActorRef<DiscardManager.Command> manager) {
        TestProbe<DiscardState> probe = KIT.createTestProbe();
        manager.tell(new DiscardManager.GetState(probe.ref()));
        return probe.receiveMessage();
    }

    private static void eventually(Runnable check) {
        KIT.createTestProbe().awaitAssert(SETTLE, () -> {
            check.run();
            return null;
        });
    }

    private static TestProbe<DiscardManager.RegistrationResult> register(ActorRef<DiscardManager.Command> manager,
            TestProbe<Object> holder, String name, DiscardManager.HolderKind kind,
            Optional<DiscardManager.PinOwner> owner) {
        TestProbe<DiscardManager.RegistrationResult> reply = KIT.createTestProbe();
        manager.tell(new DiscardManager.Register(holder.ref(), name, kind, owner, reply.ref()));
        return reply;
    }

    private static TestProbe<DiscardManager.Decision> request(ActorRef<DiscardManager.Command> manager,
            TestProbe<Object> requester, long firstFrame, long frames) {
        TestProbe<DiscardManager.Decision> reply = KIT.createTestProbe();
        manager.tell(new DiscardManager.RequestDiscard(requester.ref(), List.of(frames(firstFrame, frames)), frames,
                reply.ref()));
        return reply;
    }

    private static TestProbe<DiscardManager.Decision> report(ActorRef<DiscardManager.Command> manager,
            TestProbe<Object> requester, long firstFrame, long frames) {
        TestProbe<DiscardManager.Decision> reply = KIT.createTestProbe();
        manager.tell(new DiscardManager.ReportFreePages(requester.ref(), List.of(frames(firstFrame, frames)), frames,
                reply.ref()));
        return reply;
    }

    private static AddressRange frames(long first, long count) {
        return AddressRange.of(first * FRAME, count * FRAME);
    }

    /** A coordinated holder registered with {@code port} as its container's port; the guest promised to tell. */
    private static DiscardManager.PinOwner coordinatedHolder(ActorRef<DiscardManager.Command> manager,
            TestProbe<Object> holder, TestProbe<Object> container, TestProbe<DiscardManager.PinOwnerRequest> port) {
        DiscardManager.PinOwner owner = new DiscardManager.PinOwner(container.ref(), port.ref(), BLOCK);
        assertInstanceOf(DiscardManager.Registered.class, register(manager, holder, "g1",
                DiscardManager.HolderKind.COORDINATED_REQUIRED, Optional.of(owner)).receiveMessage());
        manager.tell(new DiscardManager.SetGuestContract(true));
        return owner;
    }

    @Test
    void aPinOwnerThatStopsReleasesOnlyItsOwnDrainingHolders() {
        ActorRef<DiscardManager.Command> manager = manager(Duration.ofSeconds(60));
        TestProbe<Object> containerA = KIT.createTestProbe();
        TestProbe<Object> containerB = KIT.createTestProbe();
        TestProbe<DiscardManager.PinOwnerRequest> portA = KIT.createTestProbe();
        TestProbe<DiscardManager.PinOwnerRequest> portB = KIT.createTestProbe();
        DiscardManager.PinOwner ownerA = new DiscardManager.PinOwner(containerA.ref(), portA.ref(), BLOCK);
        DiscardManager.PinOwner ownerB = new DiscardManager.PinOwner(containerB.ref(), portB.ref(), BLOCK);
        TestProbe<Object> a = KIT.createTestProbe();
        TestProbe<Object> b = KIT.createTestProbe();
        TestProbe<Object> c = KIT.createTestProbe();
        DiscardManager.HolderKind kind = DiscardManager.HolderKind.UNCOORDINATED_DISABLED;
        register(manager, a, "a", kind, Optional.of(ownerA)).expectMessageClass(DiscardManager.Registered.class);
        register(manager, b, "b", kind, Optional.of(ownerB)).expectMessageClass(DiscardManager.Registered.class);
        register(manager, c, "c", kind, Optional.of(ownerA)).expectMessageClass(DiscardManager.Registered.class);
        a.stop();
        b.stop();
        // Their containers are asked, and do not answer: both stay registered, draining.
        assertInstanceOf(DiscardManager.AwaitPinsGone.class, portA.receiveMessage());
        assertInstanceOf(DiscardManager.AwaitPinsGone.class, portB.receiveMessage());
        eventually(() -> assertEquals(List.of("a (stopped, draining)", "b (stopped, draining)", "c"),
                state(manager).holderNames()));

        // Container A stops (its PostStop closed its IOMMU): a's pins are gone, b's container still holds b's, and
        // c is running.
        containerA.stop();
        eventually(() -> assertEquals(List.of("b (stopped, draining)", "c"), state(manager).holderNames()));
    }

    @Test
    void aStoppedRequesterVoidsOnlyItsOwnTickets() {
        ActorRef<DiscardManager.Command> manager = manager(Duration.ofSeconds(60));
        TestProbe<Object> first = KIT.createTestProbe();
        TestProbe<Object> second = KIT.createTestProbe();
        DiscardManager.DiscardNow kept = assertInstanceOf(DiscardManager.DiscardNow.class,
                report(manager, first, 0, 1).receiveMessage());
        assertInstanceOf(DiscardManager.DiscardNow.class, report(manager, second, 8, 2).receiveMessage());
        TestProbe<Object> holder = KIT.createTestProbe();
        TestProbe<DiscardManager.RegistrationResult> registered = register(manager, holder, "g0",
                DiscardManager.HolderKind.UNCOORDINATED_DISABLED, Optional.empty());
        second.stop();
        // The first requester's discard still runs: the holder is not told to go on and pin yet.
        registered.expectNoMessage(Duration.ofMillis(500));
        manager.tell(new DiscardManager.DiscardDone(kept.ticket(), 1));
        assertEquals(new DiscardManager.Registered("g0", DiscardManager.HolderKind.UNCOORDINATED_DISABLED, 1),
                registered.receiveMessage());
        DiscardState state = state(manager);
        assertEquals(2, state.reportsGranted());
        assertEquals(FRAME, state.reportedBytesDiscarded(), "the surviving ticket is still a free page report");
        assertEquals(0, state.bytesDiscarded());
    }

    @Test
    void aPinOwnerThatDoesNotConfirmIsAskedAgainAndItsHolderKeepsDisablingDiscards() {
        ActorRef<DiscardManager.Command> manager = manager(Duration.ofSeconds(1));
        TestProbe<Object> container = KIT.createTestProbe();
        TestProbe<DiscardManager.PinOwnerRequest> port = KIT.createTestProbe();
        TestProbe<Object> holder = KIT.createTestProbe();
        register(manager, holder, "g0", DiscardManager.HolderKind.UNCOORDINATED_DISABLED,
                Optional.of(new DiscardManager.PinOwner(container.ref(), port.ref(), BLOCK)))
                .expectMessageClass(DiscardManager.Registered.class);
        holder.stop();
        assertInstanceOf(DiscardManager.AwaitPinsGone.class, port.receiveMessage());
        // No answer within the drain timeout: asked again, still registered and still disabling discards.
        DiscardManager.AwaitPinsGone again = assertInstanceOf(DiscardManager.AwaitPinsGone.class,
                port.receiveMessage(SETTLE));
        assertEquals(holder.ref(), again.holder());
        TestProbe<Object> requester = KIT.createTestProbe();
        assertEquals(new DiscardManager.Refused(List.of("g0 (stopped, draining)")),
                request(manager, requester, 0, 1).receiveMessage());
        again.replyTo().tell(new DiscardManager.PinsGone("c0", holder.ref()));
        eventually(() -> assertEquals(List.of(), state(manager).holderNames()));
        assertInstanceOf(DiscardManager.DiscardNow.class, request(manager, requester, 0, 1).receiveMessage());
    }

    @Test
    void requestsArrivingDuringABlockRoundWaitAndAreServedInOrder() {
        ActorRef<DiscardManager.Command> manager = manager(Duration.ofSeconds(60));
        TestProbe<Object> holder = KIT.createTestProbe();
        TestProbe<DiscardManager.PinOwnerRequest> port = KIT.createTestProbe();
        coordinatedHolder(manager, holder, KIT.createTestProbe(), port);
        TestProbe<Object> requester = KIT.createTestProbe();
        TestProbe<DiscardManager.Decision> completing = request(manager, requester, 0, 4);
        DiscardManager.ReleaseBlocks release = assertInstanceOf(DiscardManager.ReleaseBlocks.class,
                port.receiveMessage());

        TestProbe<DiscardManager.Decision> half = request(manager, requester, 4, 2);
        TestProbe<DiscardManager.Decision> reported = report(manager, requester, 12, 1);
        TestProbe<DiscardManager.ReclaimResult> reclaimed = KIT.createTestProbe();
        manager.tell(new DiscardManager.Reclaim(List.of(frames(0, 1)), reclaimed.ref()));
        TestProbe<DiscardManager.ReclaimResult> restored = KIT.createTestProbe();
        manager.tell(new DiscardManager.RestoreAll(restored.ref()));
        half.expectNoMessage(Duration.ofMillis(100));
        reported.expectNoMessage(Duration.ofMillis(1));
        reclaimed.expectNoMessage(Duration.ofMillis(1));
        restored.expectNoMessage(Duration.ofMillis(1));

        release.replyTo().tell(new DiscardManager.BlocksDone("c0"));
        assertEquals(List.of(AddressRange.of(0, BLOCK)), assertInstanceOf(DiscardManager.DiscardNow.class,
                completing.receiveMessage()).ranges());
        assertEquals(new DiscardManager.Held(List.of(frames(4, 2)), 2), half.receiveMessage());
        assertEquals(new DiscardManager.Refused(List.of("g1")), reported.receiveMessage());
        // The reclaim touches the discarded block: the container maps it again before the answer.
        DiscardManager.RestoreBlocks restore = assertInstanceOf(DiscardManager.RestoreBlocks.class,
                port.receiveMessage());
        assertEquals(List.of(AddressRange.of(0, BLOCK)), restore.blocks());
        restore.replyTo().tell(new DiscardManager.BlocksDone("c0"));
        assertEquals(new DiscardManager.Reclaimed(1), reclaimed.receiveMessage());
        assertEquals(new DiscardManager.Reclaimed(0), restored.receiveMessage(), "nothing was left discarded");
        port.expectNoMessage(Duration.ofMillis(100));
    }

    @Test
    void aContainerThatStopsMidRoundCountsAsUnmappedAndItsLateAnswerChangesNothing() {
        ActorRef<DiscardManager.Command> manager = manager(Duration.ofSeconds(60));
        TestProbe<Object> holder = KIT.createTestProbe();
        TestProbe<Object> container = KIT.createTestProbe();
        TestProbe<DiscardManager.PinOwnerRequest> port = KIT.createTestProbe();
        coordinatedHolder(manager, holder, container, port);
        TestProbe<Object> requester = KIT.createTestProbe();
        TestProbe<DiscardManager.Decision> completing = request(manager, requester, 0, 4);
        DiscardManager.ReleaseBlocks release = assertInstanceOf(DiscardManager.ReleaseBlocks.class,
                port.receiveMessage());
        // The container's PostStop closed its IOMMU: nothing maps the block any more.
        container.stop();
        assertEquals(List.of(AddressRange.of(0, BLOCK)), assertInstanceOf(DiscardManager.DiscardNow.class,
                completing.receiveMessage()).ranges());
        release.replyTo().tell(new DiscardManager.BlocksFailed("c0", release.blocks(), "EBUSY"));
        DiscardState state = state(manager);
        assertEquals(1, state.blocksUnmapped());
        assertEquals(0, state.blockReleaseFailures(), "an answer for a finished round is not counted");
    }

    @Test
    void aRestoreWithNoContainerLeftAnswersAtOnce() {
        ActorRef<DiscardManager.Command> manager = manager(Duration.ofSeconds(60));
        TestProbe<Object> holder = KIT.createTestProbe();
        TestProbe<DiscardManager.PinOwnerRequest> port = KIT.createTestProbe();
        coordinatedHolder(manager, holder, KIT.createTestProbe(), port);
        TestProbe<Object> requester = KIT.createTestProbe();
        TestProbe<DiscardManager.Decision> completing = request(manager, requester, 4, 4);
        assertInstanceOf(DiscardManager.ReleaseBlocks.class, port.receiveMessage()).replyTo()
                .tell(new DiscardManager.BlocksDone("c0"));
        DiscardManager.DiscardNow now = assertInstanceOf(DiscardManager.DiscardNow.class,
                completing.receiveMessage());
        manager.tell(new DiscardManager.DiscardDone(now.ticket(), 4));
        TestProbe<DiscardManager.RegistrationResult> left = KIT.createTestProbe();
        manager.tell(new DiscardManager.Unregister(holder.ref(), left.ref()));
        assertEquals(new DiscardManager.Unregistered("g1", DiscardManager.HolderKind.COORDINATED_REQUIRED, 0),
                left.receiveMessage());

        TestProbe<DiscardManager.ReclaimResult> reclaimed = KIT.createTestProbe();
        manager.tell(new DiscardManager.Reclaim(List.of(frames(5, 1)), reclaimed.ref()));
        assertEquals(new DiscardManager.Reclaimed(1), reclaimed.receiveMessage());
        port.expectNoMessage(Duration.ofMillis(100));
        assertEquals(0, state(manager).blocksUnmapped());
    }

    @Test
    void aHolderThatLeavesBeforeItsRegistrationIsAnsweredIsNeverToldItIsRegistered() {
        ActorRef<DiscardManager.Command> manager = manager(Duration.ofSeconds(60));
        TestProbe<Object> requester = KIT.createTestProbe();
        DiscardManager.DiscardNow now = assertInstanceOf(DiscardManager.DiscardNow.class,
                request(manager, requester, 0, 1).receiveMessage());
        DiscardManager.HolderKind kind = DiscardManager.HolderKind.UNCOORDINATED_DISABLED;
        TestProbe<Object> leaving = KIT.createTestProbe();
        TestProbe<Object> staying = KIT.createTestProbe();
        TestProbe<DiscardManager.RegistrationResult> firstTry = register(manager, leaving, "g-leaving", kind,
                Optional.empty());
        TestProbe<DiscardManager.RegistrationResult> stayingReply = register(manager, staying, "g-staying", kind,
                Optional.empty());
        TestProbe<DiscardManager.RegistrationResult> left = KIT.createTestProbe();
        manager.tell(new DiscardManager.Unregister(leaving.ref(), left.ref()));
        assertEquals(new DiscardManager.Unregistered("g-leaving", kind, 1), left.receiveMessage());
        TestProbe<DiscardManager.RegistrationResult> secondTry = register(manager, leaving, "g-leaving", kind,
                Optional.empty());
        firstTry.expectNoMessage(Duration.ofMillis(100));

        manager.tell(new DiscardManager.DiscardDone(now.ticket(), 1));
        assertEquals(new DiscardManager.Registered("g-staying", kind, 2), stayingReply.receiveMessage());
        assertEquals(new DiscardManager.Registered("g-leaving", kind, 2), secondTry.receiveMessage());
        firstTry.expectNoMessage(Duration.ofMillis(200));
    }
}
