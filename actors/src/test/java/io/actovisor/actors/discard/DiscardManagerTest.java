package io.actovisor.actors.discard;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.actors.testing.NativeTestKit;
import io.actovisor.memory.AddressRange;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** The discard manager's own protocol: holders of both kinds, draining, and decisions. */
class DiscardManagerTest {
    private static final List<AddressRange> RANGES = List.of(AddressRange.of(0x5000, 0x2000));
    private static ActorTestKit kit;

    @BeforeAll
    static void start() {
        kit = NativeTestKit.start();
    }

    @AfterAll
    static void stop() {
        NativeTestKit.stop(kit);
    }

    private static ActorRef<DiscardManager.Command> manager() {
        return kit.spawn(DiscardManager.create("test", Duration.ofSeconds(5)));
    }

    private static DiscardState state(ActorRef<DiscardManager.Command> manager) {
        TestProbe<DiscardState> probe = kit.createTestProbe();
        manager.tell(new DiscardManager.GetState(probe.ref()));
        return probe.receiveMessage();
    }

    private static DiscardManager.Decision request(ActorRef<DiscardManager.Command> manager, ActorRef<?> requester) {
        TestProbe<DiscardManager.Decision> probe = kit.createTestProbe();
        manager.tell(new DiscardManager.RequestDiscard(requester, RANGES, 2, probe.ref()));
        return probe.receiveMessage();
    }

    private static void eventually(Runnable check) {
        kit.createTestProbe().awaitAssert(Duration.ofSeconds(10), () -> {
            check.run();
            return null;
        });
    }

    @Test
    void registrationsArePerHolderAndReleasedWhenTheHolderStops() {
        ActorRef<DiscardManager.Command> manager = manager();
        TestProbe<Object> holder = kit.createTestProbe();
        TestProbe<DiscardManager.RegistrationResult> replies = kit.createTestProbe();
        manager.tell(new DiscardManager.Register(holder.ref(), "test-holder",
                DiscardManager.HolderKind.UNCOORDINATED_DISABLED, Optional.empty(), replies.ref()));
        assertEquals(new DiscardManager.Registered("test-holder", DiscardManager.HolderKind.UNCOORDINATED_DISABLED,
                1), replies.receiveMessage());
        manager.tell(new DiscardManager.Register(holder.ref(), "test-holder",
                DiscardManager.HolderKind.UNCOORDINATED_DISABLED, Optional.empty(), replies.ref()));
        assertInstanceOf(DiscardManager.RegistrationRefused.class, replies.receiveMessage());
        TestProbe<Object> stranger = kit.createTestProbe();
        manager.tell(new DiscardManager.Unregister(stranger.ref(), replies.ref()));
        assertInstanceOf(DiscardManager.RegistrationRefused.class, replies.receiveMessage());
        assertEquals(new DiscardManager.Refused(List.of("test-holder")), request(manager, stranger.ref()));
        holder.stop();
        eventually(() -> assertEquals(0, state(manager).uncoordinatedHolders()));
        assertInstanceOf(DiscardManager.DiscardNow.class, request(manager, stranger.ref()));
        kit.stop(manager);
    }

    @Test
    void aStoppedHolderIsReleasedOnlyWhenItsPinOwnerConfirmsThePinsAreGone() {
        ActorRef<DiscardManager.Command> manager = manager();
        TestProbe<Object> holder = kit.createTestProbe();
        TestProbe<Object> owner = kit.createTestProbe();
        TestProbe<DiscardManager.PinOwnerRequest> port = kit.createTestProbe();
        TestProbe<DiscardManager.RegistrationResult> replies = kit.createTestProbe();
        manager.tell(new DiscardManager.Register(holder.ref(), "g0", DiscardManager.HolderKind.UNCOORDINATED_DISABLED,
                Optional.of(new DiscardManager.PinOwner(owner.ref(), port.ref())), replies.ref()));
        replies.expectMessageClass(DiscardManager.Registered.class);
        holder.stop();
        DiscardManager.AwaitPinsGone await = port.expectMessageClass(DiscardManager.AwaitPinsGone.class);
        assertEquals(holder.ref(), await.holder());
        DiscardState draining = state(manager);
        assertEquals(1, draining.uncoordinatedHolders(), "still counted until the pins are gone");
        assertEquals(List.of("g0 (stopped, draining)"), draining.holderNames());
        TestProbe<Object> requester = kit.createTestProbe();
        assertInstanceOf(DiscardManager.Refused.class, request(manager, requester.ref()));
        await.replyTo().tell(new DiscardManager.PinsGone("c0", holder.ref()));
        eventually(() -> assertEquals(0, state(manager).uncoordinatedHolders()));
        kit.stop(manager);
    }

    @Test
    void aStoppedPinOwnerReleasesItsDrainingHolders() {
        ActorRef<DiscardManager.Command> manager = manager();
        TestProbe<Object> holder = kit.createTestProbe();
        TestProbe<Object> owner = kit.createTestProbe();
        TestProbe<DiscardManager.PinOwnerRequest> port = kit.createTestProbe();
        TestProbe<DiscardManager.RegistrationResult> replies = kit.createTestProbe();
        manager.tell(new DiscardManager.Register(holder.ref(), "g0", DiscardManager.HolderKind.UNCOORDINATED_DISABLED,
                Optional.of(new DiscardManager.PinOwner(owner.ref(), port.ref())), replies.ref()));
        replies.expectMessageClass(DiscardManager.Registered.class);
        holder.stop();
        port.expectMessageClass(DiscardManager.AwaitPinsGone.class);
        assertEquals(1, state(manager).uncoordinatedHolders());
        owner.stop();
        eventually(() -> assertEquals(0, state(manager).uncoordinatedHolders()));
        kit.stop(manager);
    }

    @Test
    void aHolderRegisteringWhileADiscardRunsIsAnsweredOnlyAfterTheDiscard() {
        ActorRef<DiscardManager.Command> manager = manager();
        TestProbe<Object> requester = kit.createTestProbe();
        DiscardManager.DiscardNow now = (DiscardManager.DiscardNow) request(manager, requester.ref());
        assertEquals(RANGES, now.ranges());
        TestProbe<Object> holder = kit.createTestProbe();
        TestProbe<DiscardManager.RegistrationResult> replies = kit.createTestProbe();
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
        kit.stop(manager);
    }

    @Test
    void aRequesterThatStopsMidDiscardNoLongerDelaysRegistrations() {
        ActorRef<DiscardManager.Command> manager = manager();
        TestProbe<Object> requester = kit.createTestProbe();
        assertInstanceOf(DiscardManager.DiscardNow.class, request(manager, requester.ref()));
        TestProbe<Object> holder = kit.createTestProbe();
        TestProbe<DiscardManager.RegistrationResult> replies = kit.createTestProbe();
        manager.tell(new DiscardManager.Register(holder.ref(), "g0", DiscardManager.HolderKind.UNCOORDINATED_DISABLED,
                Optional.empty(), replies.ref()));
        replies.expectNoMessage(Duration.ofMillis(200));
        requester.stop();
        replies.expectMessageClass(DiscardManager.Registered.class);
        kit.stop(manager);
    }

    @Test
    void coordinatedHoldersAreCountedApartAndFallBackToDisablingDiscards() {
        ActorRef<DiscardManager.Command> manager = manager();
        TestProbe<Object> holder = kit.createTestProbe();
        TestProbe<DiscardManager.RegistrationResult> replies = kit.createTestProbe();
        manager.tell(new DiscardManager.Register(holder.ref(), "g1", DiscardManager.HolderKind.COORDINATED_REQUIRED,
                Optional.empty(), replies.ref()));
        assertEquals(new DiscardManager.Registered("g1", DiscardManager.HolderKind.COORDINATED_REQUIRED, 1),
                replies.receiveMessage());
        DiscardState state = state(manager);
        assertEquals(0, state.uncoordinatedHolders());
        assertEquals(1, state.coordinatedHolders());
        assertEquals(List.of(new DiscardState.Fallback("g1", DiscardManager.NO_BLOCK_PATH)), state.fallbacks());
        assertEquals(List.of("g1"), state.disablingHolders());
        TestProbe<Object> requester = kit.createTestProbe();
        assertEquals(new DiscardManager.Refused(List.of("g1")), request(manager, requester.ref()));
        manager.tell(new DiscardManager.Unregister(holder.ref(), replies.ref()));
        assertEquals(new DiscardManager.Unregistered("g1", DiscardManager.HolderKind.COORDINATED_REQUIRED, 0),
                replies.receiveMessage());
        assertTrue(state(manager).holders().isEmpty());
        kit.stop(manager);
    }
}
