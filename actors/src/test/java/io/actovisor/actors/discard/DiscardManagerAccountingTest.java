package io.actovisor.actors.discard;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;

import io.actovisor.memory.AddressRange;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.LoggingTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;

/**
 * The discard manager's books, compared whole after every step of a coordinated balloon's life (every field of
 * {@link DiscardState}: counts, holders, fallbacks, granted, refused and held requests, bytes, frames, unmapped
 * blocks, failures), with probes for the holder, its container and the requester.
 */
class DiscardManagerAccountingTest {
    private static final ActorTestKit KIT = ActorTestKit.create();
    private static final long FRAME = 4096;
    private static final long BLOCK = 4 * FRAME;
    private static final String G0 = "vfio-group:g0";

    @AfterAll
    static void stop() {
        KIT.shutdownTestKit();
    }

    private final ActorRef<DiscardManager.Command> manager = KIT.spawn(DiscardManager.create("acct",
            DiscardManager.Settings.withDrainTimeout(Duration.ofSeconds(5)).withBlockSize(BLOCK), Optional.empty()));
    private final TestProbe<Object> holder = KIT.createTestProbe();
    private final TestProbe<Object> container = KIT.createTestProbe();
    private final TestProbe<DiscardManager.PinOwnerRequest> port = KIT.createTestProbe();
    private final TestProbe<Object> requester = KIT.createTestProbe();
    private final DiscardManager.PinOwner owner = new DiscardManager.PinOwner(container.ref(), port.ref(), BLOCK);

    /** The books as expected, field by field; every test starts from {@link #EMPTY}. */
    private record Books(int uncoordinated, int coordinated, List<DiscardState.Holder> holders, boolean tells,
            long granted, long refused, long heldRequests, long bytesDiscarded, long bytesRefused, long framesHeld,
            long blocksUnmapped, long releaseFailures, List<DiscardState.Fallback> fallbacks) {
        DiscardState state() {
            return new DiscardState("acct", uncoordinated, coordinated, holders, BLOCK, tells, granted, refused,
                    heldRequests, bytesDiscarded, bytesRefused, framesHeld, framesHeld * FRAME, blocksUnmapped,
                    releaseFailures, 0, fallbacks);
        }
    }

    private static final Books EMPTY = new Books(0, 0, List.of(), false, 0, 0, 0, 0, 0, 0, 0, 0, List.of());

    private DiscardState state() {
        TestProbe<DiscardState> probe = KIT.createTestProbe();
        manager.tell(new DiscardManager.GetState(probe.ref()));
        return probe.receiveMessage();
    }

    private DiscardManager.RegistrationResult register(TestProbe<Object> who, String name,
            DiscardManager.HolderKind kind, Optional<DiscardManager.PinOwner> pins) {
        TestProbe<DiscardManager.RegistrationResult> reply = KIT.createTestProbe();
        manager.tell(new DiscardManager.Register(who.ref(), name, kind, pins, reply.ref()));
        return reply.receiveMessage();
    }

    private DiscardManager.RegistrationResult unregister(TestProbe<Object> who) {
        TestProbe<DiscardManager.RegistrationResult> reply = KIT.createTestProbe();
        manager.tell(new DiscardManager.Unregister(who.ref(), reply.ref()));
        return reply.receiveMessage();
    }

    private TestProbe<DiscardManager.Decision> request(long firstFrame, long frames) {
        TestProbe<DiscardManager.Decision> reply = KIT.createTestProbe();
        manager.tell(new DiscardManager.RequestDiscard(requester.ref(), List.of(AddressRange.of(firstFrame * FRAME,
                frames * FRAME)), frames, reply.ref()));
        return reply;
    }

    private static DiscardState.Holder holding(String name, DiscardManager.HolderKind kind) {
        return new DiscardState.Holder(name, kind, false);
    }

    @Test
    void aCoordinatedBalloonsBooksAfterEveryStep() {
        assertEquals(EMPTY.state(), state());
        assertEquals(new DiscardManager.Registered(G0, DiscardManager.HolderKind.COORDINATED_REQUIRED, 1),
                register(holder, G0, DiscardManager.HolderKind.COORDINATED_REQUIRED, Optional.of(owner)));
        List<DiscardState.Holder> one = List.of(holding(G0, DiscardManager.HolderKind.COORDINATED_REQUIRED));
        Books books = new Books(0, 1, one, false, 0, 0, 0, 0, 0, 0, 0, 0,
                List.of(new DiscardState.Fallback(G0, DiscardManager.NO_GUEST_CONTRACT)));
        assertEquals(books.state(), state());
        assertEquals(List.of(G0), state().disablingHolders());

        // Without the guest's promise to tell, a coordinated holder disables discards like an uncoordinated one.
        assertEquals(new DiscardManager.Refused(List.of(G0)), request(0, 2).receiveMessage());
        books = new Books(0, 1, one, false, 0, 1, 0, 0, 2 * FRAME, 0, 0, 0, books.fallbacks());
        assertEquals(books.state(), state());

        manager.tell(new DiscardManager.SetGuestContract(true));
        books = new Books(0, 1, one, true, 0, 1, 0, 0, 2 * FRAME, 0, 0, 0, List.of());
        assertEquals(books.state(), state());
        assertEquals(List.of(), state().disablingHolders());

        // Half a block is held; nothing is asked of the container.
        assertEquals(new DiscardManager.Held(List.of(AddressRange.of(0, 2 * FRAME)), 2), request(0, 2)
                .receiveMessage());
        port.expectNoMessage(Duration.ofMillis(100));
        books = new Books(0, 1, one, true, 0, 1, 1, 0, 2 * FRAME, 2, 0, 0, List.of());
        assertEquals(books.state(), state());

        // The other half completes the block: the container unmaps it, then the discard is granted for the block.
        TestProbe<DiscardManager.Decision> completing = request(2, 2);
        DiscardManager.ReleaseBlocks release = assertInstanceOf(DiscardManager.ReleaseBlocks.class,
                port.receiveMessage());
        assertEquals(List.of(AddressRange.of(0, BLOCK)), release.blocks());
        completing.expectNoMessage(Duration.ofMillis(100));
        release.replyTo().tell(new DiscardManager.BlocksDone("c0"));
        DiscardManager.DiscardNow now = assertInstanceOf(DiscardManager.DiscardNow.class,
                completing.receiveMessage());
        assertEquals(List.of(AddressRange.of(0, BLOCK)), now.ranges());
        books = new Books(0, 1, one, true, 1, 1, 1, 0, 2 * FRAME, 0, 1, 0, List.of());
        assertEquals(books.state(), state());
        manager.tell(new DiscardManager.DiscardDone(now.ticket(), 4));
        books = new Books(0, 1, one, true, 1, 1, 1, 4 * FRAME, 2 * FRAME, 0, 1, 0, List.of());
        assertEquals(books.state(), state());
        LoggingTestKit.warn("DiscardDone for unknown ticket " + now.ticket()).expect(KIT.system(), () -> {
            manager.tell(new DiscardManager.DiscardDone(now.ticket(), 4));
            return null;
        });
        assertEquals(books.state(), state(), "a second DiscardDone for the same ticket counts nothing");

        // The guest takes one frame back: the block is mapped again, its three other frames are held again.
        TestProbe<DiscardManager.ReclaimResult> reclaimed = KIT.createTestProbe();
        manager.tell(new DiscardManager.Reclaim(List.of(AddressRange.of(FRAME, FRAME)), reclaimed.ref()));
        DiscardManager.RestoreBlocks restore = assertInstanceOf(DiscardManager.RestoreBlocks.class,
                port.receiveMessage());
        assertEquals(List.of(AddressRange.of(0, BLOCK)), restore.blocks());
        restore.replyTo().tell(new DiscardManager.BlocksDone("c0"));
        assertEquals(new DiscardManager.Reclaimed(1), reclaimed.receiveMessage());
        books = new Books(0, 1, one, true, 1, 1, 1, 4 * FRAME, 2 * FRAME, 3, 0, 0, List.of());
        assertEquals(books.state(), state());

        // The frame comes back; the container cannot unmap the block: it stays held, and the failure is counted.
        TestProbe<DiscardManager.Decision> refusedByContainer = request(1, 1);
        DiscardManager.ReleaseBlocks again = assertInstanceOf(DiscardManager.ReleaseBlocks.class,
                port.receiveMessage());
        again.replyTo().tell(new DiscardManager.BlocksFailed("c0", List.of(AddressRange.of(0, BLOCK)), "EBUSY"));
        assertEquals(new DiscardManager.Held(List.of(AddressRange.of(FRAME, FRAME)), 1),
                refusedByContainer.receiveMessage());
        books = new Books(0, 1, one, true, 1, 1, 2, 4 * FRAME, 2 * FRAME, 4, 0, 1, List.of());
        assertEquals(books.state(), state());

        // A reclaim of frames of no discarded block maps nothing again and asks no container.
        manager.tell(new DiscardManager.Reclaim(List.of(AddressRange.of(3 * FRAME, FRAME)), reclaimed.ref()));
        assertEquals(new DiscardManager.Reclaimed(0), reclaimed.receiveMessage());
        port.expectNoMessage(Duration.ofMillis(100));
        books = new Books(0, 1, one, true, 1, 1, 2, 4 * FRAME, 2 * FRAME, 3, 0, 1, List.of());
        assertEquals(books.state(), state());

        // Once nothing maps guest RAM, the held frames go with the next request, in runs of contiguous frames.
        assertEquals(new DiscardManager.Unregistered(G0, DiscardManager.HolderKind.COORDINATED_REQUIRED, 0),
                unregister(holder));
        DiscardManager.DiscardNow rest = assertInstanceOf(DiscardManager.DiscardNow.class,
                request(8, 1).receiveMessage());
        assertEquals(List.of(AddressRange.of(8 * FRAME, FRAME), AddressRange.of(0, 3 * FRAME)), rest.ranges());
        books = new Books(0, 0, List.of(), true, 2, 1, 2, 4 * FRAME, 2 * FRAME, 0, 0, 1, List.of());
        assertEquals(books.state(), state());
    }

    @Test
    void anUncoordinatedHolderRefusesEveryDiscardAndIsCountedApart() {
        TestProbe<Object> inhibit = KIT.createTestProbe();
        assertEquals(new DiscardManager.Registered("vfio-group:g1", DiscardManager.HolderKind.UNCOORDINATED_DISABLED,
                1), register(inhibit, "vfio-group:g1", DiscardManager.HolderKind.UNCOORDINATED_DISABLED,
                Optional.empty()));
        assertEquals(new DiscardManager.Registered(G0, DiscardManager.HolderKind.COORDINATED_REQUIRED, 1),
                register(holder, G0, DiscardManager.HolderKind.COORDINATED_REQUIRED, Optional.of(owner)));
        manager.tell(new DiscardManager.SetGuestContract(true));
        assertEquals(new DiscardManager.Refused(List.of("vfio-group:g1")), request(0, 3).receiveMessage());
        port.expectNoMessage(Duration.ofMillis(100));
        assertEquals(new Books(1, 1, List.of(holding("vfio-group:g1", DiscardManager.HolderKind
                .UNCOORDINATED_DISABLED), holding(G0, DiscardManager.HolderKind.COORDINATED_REQUIRED)), true, 0, 1, 0,
                0, 3 * FRAME, 0, 0, 0, List.of()).state(), state());
        assertEquals(new DiscardManager.Unregistered("vfio-group:g1", DiscardManager.HolderKind.UNCOORDINATED_DISABLED,
                0), unregister(inhibit));
    }

    @Test
    void registrationsThatCannotBeHonouredAreRefusedNamingWhy() {
        assertEquals(new DiscardManager.Registered(G0, DiscardManager.HolderKind.UNCOORDINATED_DISABLED, 1),
                register(holder, G0, DiscardManager.HolderKind.UNCOORDINATED_DISABLED, Optional.empty()));
        assertEquals(new DiscardManager.RegistrationRefused("again is already registered with discard manager acct"),
                register(holder, "again", DiscardManager.HolderKind.UNCOORDINATED_DISABLED, Optional.empty()));
        TestProbe<Object> other = KIT.createTestProbe();
        assertEquals(new DiscardManager.RegistrationRefused("g2: a holder that requires coordinated discards must "
                + "name the container that unmaps its blocks"), register(other, "g2",
                DiscardManager.HolderKind.COORDINATED_REQUIRED, Optional.empty()));
        assertEquals(new DiscardManager.RegistrationRefused(other.ref().path().name() + " is not registered with "
                + "discard manager acct"), unregister(other));
        assertEquals(new Books(1, 0, List.of(holding(G0, DiscardManager.HolderKind.UNCOORDINATED_DISABLED)), false,
                0, 0, 0, 0, 0, 0, 0, 0, List.of()).state(), state());
    }
}
