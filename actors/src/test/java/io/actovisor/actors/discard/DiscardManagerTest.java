package io.actovisor.actors.discard;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.actors.testing.NativeTestKit;
import io.actovisor.memory.AddressRange;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/** The discard manager's own protocol: holders of both kinds, draining, and decisions. */
class DiscardManagerTest {
    private static final List<AddressRange> RANGES = List.of(AddressRange.of(0x5000, 0x2000));
    @RegisterExtension
    static final NativeTestKit KIT = new NativeTestKit();

    private static ActorRef<DiscardManager.Command> manager() {
        return KIT.kit().spawn(DiscardManager.create("test", Duration.ofSeconds(5)));
    }

    private static DiscardState state(ActorRef<DiscardManager.Command> manager) {
        TestProbe<DiscardState> probe = KIT.kit().createTestProbe();
        manager.tell(new DiscardManager.GetState(probe.ref()));
        return probe.receiveMessage();
    }

    private static DiscardManager.Decision request(ActorRef<DiscardManager.Command> manager, ActorRef<?> requester) {
        TestProbe<DiscardManager.Decision> probe = KIT.kit().createTestProbe();
        manager.tell(new DiscardManager.RequestDiscard(requester, RANGES, 2, probe.ref()));
        return probe.receiveMessage();
    }

    private static void eventually(Runnable check) {
        KIT.kit().createTestProbe().awaitAssert(Duration.ofSeconds(10), () -> {
            check.run();
            return null;
        });
    }

    @Test
    void registrationsArePerHolderAndReleasedWhenTheHolderStops() {
        ActorRef<DiscardManager.Command> manager = manager();
        TestProbe<Object> holder = KIT.kit().createTestProbe();
        TestProbe<DiscardManager.RegistrationResult> replies = KIT.kit().createTestProbe();
        manager.tell(new DiscardManager.Register(holder.ref(), "test-holder",
                DiscardManager.HolderKind.UNCOORDINATED_DISABLED, Optional.empty(), replies.ref()));
        assertEquals(new DiscardManager.Registered("test-holder", DiscardManager.HolderKind.UNCOORDINATED_DISABLED,
                1), replies.receiveMessage());
        manager.tell(new DiscardManager.Register(holder.ref(), "test-holder",
                DiscardManager.HolderKind.UNCOORDINATED_DISABLED, Optional.empty(), replies.ref()));
        assertInstanceOf(DiscardManager.RegistrationRefused.class, replies.receiveMessage());
        TestProbe<Object> stranger = KIT.kit().createTestProbe();
        manager.tell(new DiscardManager.Unregister(stranger.ref(), replies.ref()));
        assertInstanceOf(DiscardManager.RegistrationRefused.class, replies.receiveMessage());
        assertEquals(new DiscardManager.Refused(List.of("test-holder")), request(manager, stranger.ref()));
        holder.stop();
        eventually(() -> assertEquals(0, state(manager).uncoordinatedHolders()));
        assertInstanceOf(DiscardManager.DiscardNow.class, request(manager, stranger.ref()));
        KIT.kit().stop(manager);
    }

    @Test
    void aStoppedHolderIsReleasedOnlyWhenItsPinOwnerConfirmsThePinsAreGone() {
        ActorRef<DiscardManager.Command> manager = manager();
        TestProbe<Object> holder = KIT.kit().createTestProbe();
        TestProbe<Object> owner = KIT.kit().createTestProbe();
        TestProbe<DiscardManager.PinOwnerRequest> port = KIT.kit().createTestProbe();
        TestProbe<DiscardManager.RegistrationResult> replies = KIT.kit().createTestProbe();
        manager.tell(new DiscardManager.Register(holder.ref(), "g0", DiscardManager.HolderKind.UNCOORDINATED_DISABLED,
                Optional.of(new DiscardManager.PinOwner(owner.ref(), port.ref(), 2L << 20)), replies.ref()));
        replies.expectMessageClass(DiscardManager.Registered.class);
        holder.stop();
        DiscardManager.AwaitPinsGone await = port.expectMessageClass(DiscardManager.AwaitPinsGone.class);
        assertEquals(holder.ref(), await.holder());
        DiscardState draining = state(manager);
        assertEquals(1, draining.uncoordinatedHolders(), "still counted until the pins are gone");
        assertEquals(List.of("g0 (stopped, draining)"), draining.holderNames());
        TestProbe<Object> requester = KIT.kit().createTestProbe();
        assertInstanceOf(DiscardManager.Refused.class, request(manager, requester.ref()));
        await.replyTo().tell(new DiscardManager.PinsGone("c0", holder.ref()));
        eventually(() -> assertEquals(0, state(manager).uncoordinatedHolders()));
        KIT.kit().stop(manager);
    }

    @Test
    void aStoppedPinOwnerReleasesItsDrainingHolders() {
        ActorRef<DiscardManager.Command> manager = manager();
        TestProbe<Object> holder = KIT.kit().createTestProbe();
        TestProbe<Object> owner = KIT.kit().createTestProbe();
        TestProbe<DiscardManager.PinOwnerRequest> port = KIT.kit().createTestProbe();
        TestProbe<DiscardManager.RegistrationResult> replies = KIT.kit().createTestProbe();
        manager.tell(new DiscardManager.Register(holder.ref(), "g0", DiscardManager.HolderKind.UNCOORDINATED_DISABLED,
                Optional.of(new DiscardManager.PinOwner(owner.ref(), port.ref(), 2L << 20)), replies.ref()));
        replies.expectMessageClass(DiscardManager.Registered.class);
        holder.stop();
        port.expectMessageClass(DiscardManager.AwaitPinsGone.class);
        assertEquals(1, state(manager).uncoordinatedHolders());
        owner.stop();
        eventually(() -> assertEquals(0, state(manager).uncoordinatedHolders()));
        KIT.kit().stop(manager);
    }

    @Test
    void aHolderRegisteringWhileADiscardRunsIsAnsweredOnlyAfterTheDiscard() {
        ActorRef<DiscardManager.Command> manager = manager();
        TestProbe<Object> requester = KIT.kit().createTestProbe();
        DiscardManager.DiscardNow now = (DiscardManager.DiscardNow) request(manager, requester.ref());
        assertEquals(RANGES, now.ranges());
        TestProbe<Object> holder = KIT.kit().createTestProbe();
        TestProbe<DiscardManager.RegistrationResult> replies = KIT.kit().createTestProbe();
        manager.tell(new DiscardManager.Register(holder.ref(), "g0", DiscardManager.HolderKind.UNCOORDINATED_DISABLED,
                Optional.empty(), replies.ref()));
        // Counted at once (a second request is refused) but not told to go on and pin.
        assertEquals(new DiscardManager.Refused(List.of("g0")), request(manager, requester.ref()));
        replies.expectNoMessage(Duration.ofMillis(200));
        manager.tell(new DiscardManager.DiscardDone(now.ticket(), 2));
        replies.expectMessageClass(DiscardManager.Registered.class);
        DiscardState state = state(manager);
        assertEquals(1, state.discardsGranted());
        assertEquals(1, state.discardsRefused());
        assertEquals(2 * 4096, state.bytesDiscarded());
        assertEquals(2 * 4096, state.bytesRefused());
        KIT.kit().stop(manager);
    }

    @Test
    void aRequesterThatStopsMidDiscardNoLongerDelaysRegistrations() {
        ActorRef<DiscardManager.Command> manager = manager();
        TestProbe<Object> requester = KIT.kit().createTestProbe();
        assertInstanceOf(DiscardManager.DiscardNow.class, request(manager, requester.ref()));
        TestProbe<Object> holder = KIT.kit().createTestProbe();
        TestProbe<DiscardManager.RegistrationResult> replies = KIT.kit().createTestProbe();
        manager.tell(new DiscardManager.Register(holder.ref(), "g0", DiscardManager.HolderKind.UNCOORDINATED_DISABLED,
                Optional.empty(), replies.ref()));
        replies.expectNoMessage(Duration.ofMillis(200));
        requester.stop();
        replies.expectMessageClass(DiscardManager.Registered.class);
        KIT.kit().stop(manager);
    }

    private static final long BLOCK = 4 * 4096;

    /** A manager over 16 KiB blocks with one coordinated holder whose container is {@code port}. */
    private static ActorRef<DiscardManager.Command> coordinated(TestProbe<Object> holder,
            TestProbe<DiscardManager.PinOwnerRequest> port, TestProbe<DiscardManager.FailStop> failStop) {
        ActorRef<DiscardManager.Command> manager = KIT.kit().spawn(DiscardManager.create("coordinated",
                DiscardManager.Settings.withDrainTimeout(Duration.ofSeconds(5)).withBlockSize(BLOCK)
                        .withReleaseTimeout(Duration.ofSeconds(3)), Optional.of(failStop.ref())));
        TestProbe<DiscardManager.RegistrationResult> replies = KIT.kit().createTestProbe();
        manager.tell(new DiscardManager.Register(holder.ref(), "g1", DiscardManager.HolderKind.COORDINATED_REQUIRED,
                Optional.of(new DiscardManager.PinOwner(KIT.kit().createTestProbe().ref(), port.ref(), BLOCK)),
                replies.ref()));
        replies.expectMessageClass(DiscardManager.Registered.class);
        return manager;
    }

    private static DiscardManager.Decision request(ActorRef<DiscardManager.Command> manager, ActorRef<?> requester,
            AddressRange range) {
        TestProbe<DiscardManager.Decision> probe = KIT.kit().createTestProbe();
        manager.tell(new DiscardManager.RequestDiscard(requester, List.of(range), range.size() / 4096, probe.ref()));
        return probe.receiveMessage();
    }

    @Test
    void coordinatedHoldersAreCountedApartAndDisableDiscardsUntilTheGuestPromisesToTell() {
        TestProbe<Object> holder = KIT.kit().createTestProbe();
        TestProbe<DiscardManager.PinOwnerRequest> port = KIT.kit().createTestProbe();
        ActorRef<DiscardManager.Command> manager = coordinated(holder, port, KIT.kit().createTestProbe());
        DiscardState state = state(manager);
        assertEquals(0, state.uncoordinatedHolders());
        assertEquals(1, state.coordinatedHolders());
        assertEquals(List.of(new DiscardState.Fallback("g1", DiscardManager.NO_GUEST_CONTRACT)), state.fallbacks());
        assertEquals(List.of("g1"), state.disablingHolders());
        TestProbe<Object> requester = KIT.kit().createTestProbe();
        assertEquals(new DiscardManager.Refused(List.of("g1")), request(manager, requester.ref(),
                AddressRange.of(0, BLOCK)));
        manager.tell(new DiscardManager.SetGuestContract(true));
        assertEquals(List.of(), state(manager).fallbacks());
        TestProbe<DiscardManager.RegistrationResult> replies = KIT.kit().createTestProbe();
        manager.tell(new DiscardManager.Unregister(holder.ref(), replies.ref()));
        assertEquals(new DiscardManager.Unregistered("g1", DiscardManager.HolderKind.COORDINATED_REQUIRED, 0),
                replies.receiveMessage());
        KIT.kit().stop(manager);
    }

    @Test
    void aCompleteBlockIsDiscardedOnlyAfterItsContainerUnmappedItAndMappedAgainBeforeADeflateIsAnswered() {
        TestProbe<Object> holder = KIT.kit().createTestProbe();
        TestProbe<DiscardManager.PinOwnerRequest> port = KIT.kit().createTestProbe();
        ActorRef<DiscardManager.Command> manager = coordinated(holder, port, KIT.kit().createTestProbe());
        manager.tell(new DiscardManager.SetGuestContract(true));
        TestProbe<Object> requester = KIT.kit().createTestProbe();
        // Three of the four frames of block 1: held, nothing asked of the container.
        assertEquals(new DiscardManager.Held(List.of(AddressRange.of(BLOCK, 3 * 4096)), 3),
                request(manager, requester.ref(), AddressRange.of(BLOCK, 3 * 4096)));
        port.expectNoMessage(Duration.ofMillis(100));
        assertEquals(3, state(manager).framesHeld());
        // The fourth completes it: the container is asked first, and the answer waits for it.
        TestProbe<DiscardManager.Decision> decision = KIT.kit().createTestProbe();
        manager.tell(new DiscardManager.RequestDiscard(requester.ref(), List.of(AddressRange.of(BLOCK + 3 * 4096,
                4096)), 1, decision.ref()));
        DiscardManager.ReleaseBlocks release = port.expectMessageClass(DiscardManager.ReleaseBlocks.class);
        assertEquals(List.of(AddressRange.of(BLOCK, BLOCK)), release.blocks());
        decision.expectNoMessage(Duration.ofMillis(100));
        release.replyTo().tell(new DiscardManager.BlocksDone("c0"));
        DiscardManager.DiscardNow now = (DiscardManager.DiscardNow) decision.receiveMessage();
        assertEquals(List.of(AddressRange.of(BLOCK, BLOCK)), now.ranges());
        manager.tell(new DiscardManager.DiscardDone(now.ticket(), 4));
        DiscardState discarded = state(manager);
        assertEquals(1, discarded.blocksUnmapped());
        assertEquals(0, discarded.framesHeld());
        // A deflate of one frame: the block is mapped again before the answer.
        TestProbe<DiscardManager.ReclaimResult> reclaimed = KIT.kit().createTestProbe();
        manager.tell(new DiscardManager.Reclaim(List.of(AddressRange.of(BLOCK + 4096, 4096)), reclaimed.ref()));
        DiscardManager.RestoreBlocks restore = port.expectMessageClass(DiscardManager.RestoreBlocks.class);
        assertEquals(List.of(AddressRange.of(BLOCK, BLOCK)), restore.blocks());
        reclaimed.expectNoMessage(Duration.ofMillis(100));
        restore.replyTo().tell(new DiscardManager.BlocksDone("c0"));
        assertEquals(new DiscardManager.Reclaimed(1), reclaimed.receiveMessage());
        DiscardState restored = state(manager);
        assertEquals(0, restored.blocksUnmapped());
        assertEquals(3, restored.framesHeld(), "the block's other frames are still in the balloon");
        KIT.kit().stop(manager);
    }

    @Test
    void aBlockTheContainerCannotUnmapStaysHeldAndCounted() {
        TestProbe<Object> holder = KIT.kit().createTestProbe();
        TestProbe<DiscardManager.PinOwnerRequest> port = KIT.kit().createTestProbe();
        ActorRef<DiscardManager.Command> manager = coordinated(holder, port, KIT.kit().createTestProbe());
        manager.tell(new DiscardManager.SetGuestContract(true));
        TestProbe<Object> requester = KIT.kit().createTestProbe();
        TestProbe<DiscardManager.Decision> decision = KIT.kit().createTestProbe();
        manager.tell(new DiscardManager.RequestDiscard(requester.ref(), List.of(AddressRange.of(0, BLOCK)), 4,
                decision.ref()));
        DiscardManager.ReleaseBlocks release = port.expectMessageClass(DiscardManager.ReleaseBlocks.class);
        release.replyTo().tell(new DiscardManager.BlocksFailed("c0", release.blocks(), "EBUSY"));
        assertInstanceOf(DiscardManager.Held.class, decision.receiveMessage());
        DiscardState state = state(manager);
        assertEquals(1, state.blockReleaseFailures());
        assertEquals(4, state.framesHeld());
        assertEquals(0, state.blocksUnmapped());
        // A container that does not answer in time: the same.
        manager.tell(new DiscardManager.RequestDiscard(requester.ref(), List.of(AddressRange.of(BLOCK, BLOCK)), 4,
                decision.ref()));
        DiscardManager.ReleaseBlocks silent = port.expectMessageClass(DiscardManager.ReleaseBlocks.class);
        assertEquals(2, silent.blocks().size(), "the failed block is tried again with the new one");
        assertInstanceOf(DiscardManager.Held.class, decision.receiveMessage(Duration.ofSeconds(10)));
        assertEquals(3, state(manager).blockReleaseFailures());
        KIT.kit().stop(manager);
    }

    @Test
    void aRemapThatKeepsFailingStopsTheVmAndNeverTellsTheGuestToGoOn() {
        TestProbe<Object> holder = KIT.kit().createTestProbe();
        TestProbe<DiscardManager.PinOwnerRequest> port = KIT.kit().createTestProbe();
        TestProbe<DiscardManager.FailStop> failStop = KIT.kit().createTestProbe();
        ActorRef<DiscardManager.Command> manager = coordinated(holder, port, failStop);
        manager.tell(new DiscardManager.SetGuestContract(true));
        TestProbe<DiscardManager.Decision> decision = KIT.kit().createTestProbe();
        manager.tell(new DiscardManager.RequestDiscard(KIT.kit().createTestProbe().ref(), List.of(AddressRange.of(0,
                BLOCK)), 4, decision.ref()));
        port.expectMessageClass(DiscardManager.ReleaseBlocks.class).replyTo()
                .tell(new DiscardManager.BlocksDone("c0"));
        assertInstanceOf(DiscardManager.DiscardNow.class, decision.receiveMessage());
        TestProbe<DiscardManager.ReclaimResult> reclaimed = KIT.kit().createTestProbe();
        manager.tell(new DiscardManager.Reclaim(List.of(AddressRange.of(0, 4096)), reclaimed.ref()));
        for (int attempt = 0; attempt < 3; attempt++) {
            DiscardManager.RestoreBlocks restore = port.expectMessageClass(DiscardManager.RestoreBlocks.class);
            reclaimed.expectNoMessage(Duration.ofMillis(50));
            restore.replyTo().tell(new DiscardManager.BlocksFailed("c0", restore.blocks(), "ENOMEM"));
        }
        assertInstanceOf(DiscardManager.ReclaimFailed.class, reclaimed.receiveMessage());
        assertTrue(failStop.receiveMessage().reason().contains("ENOMEM"));
        assertEquals(3, state(manager).remapFailures());
        KIT.kit().stop(manager);
    }

    @Test
    void aResetMapsEveryDiscardedBlockAgain() {
        TestProbe<Object> holder = KIT.kit().createTestProbe();
        TestProbe<DiscardManager.PinOwnerRequest> port = KIT.kit().createTestProbe();
        ActorRef<DiscardManager.Command> manager = coordinated(holder, port, KIT.kit().createTestProbe());
        manager.tell(new DiscardManager.SetGuestContract(true));
        TestProbe<DiscardManager.Decision> decision = KIT.kit().createTestProbe();
        manager.tell(new DiscardManager.RequestDiscard(KIT.kit().createTestProbe().ref(), List.of(AddressRange.of(0,
                2 * BLOCK)), 8, decision.ref()));
        port.expectMessageClass(DiscardManager.ReleaseBlocks.class).replyTo()
                .tell(new DiscardManager.BlocksDone("c0"));
        DiscardManager.DiscardNow now = (DiscardManager.DiscardNow) decision.receiveMessage();
        assertEquals(List.of(AddressRange.of(0, BLOCK), AddressRange.of(BLOCK, BLOCK)), now.ranges());
        TestProbe<DiscardManager.ReclaimResult> reset = KIT.kit().createTestProbe();
        manager.tell(new DiscardManager.RestoreAll(reset.ref()));
        DiscardManager.RestoreBlocks restore = port.expectMessageClass(DiscardManager.RestoreBlocks.class);
        assertEquals(2, restore.blocks().size());
        restore.replyTo().tell(new DiscardManager.BlocksDone("c0"));
        assertEquals(new DiscardManager.Reclaimed(2), reset.receiveMessage());
        assertEquals(0, state(manager).blocksUnmapped());
        KIT.kit().stop(manager);
    }

    @Test
    void aCoordinatedHolderWhoseContainerUsesAnotherBlockSizeIsRefusedNamingBoth() {
        ActorRef<DiscardManager.Command> manager = manager();
        TestProbe<Object> holder = KIT.kit().createTestProbe();
        TestProbe<DiscardManager.PinOwnerRequest> port = KIT.kit().createTestProbe();
        TestProbe<DiscardManager.RegistrationResult> replies = KIT.kit().createTestProbe();
        manager.tell(new DiscardManager.Register(holder.ref(), "g1", DiscardManager.HolderKind.COORDINATED_REQUIRED,
                Optional.of(new DiscardManager.PinOwner(KIT.kit().createTestProbe().ref(), port.ref(), 1L << 30)),
                replies.ref()));
        DiscardManager.RegistrationRefused refused = (DiscardManager.RegistrationRefused) replies.receiveMessage();
        assertTrue(refused.reason().contains("1073741824") && refused.reason().contains("2097152"),
                refused.reason());
        KIT.kit().stop(manager);
    }
}
