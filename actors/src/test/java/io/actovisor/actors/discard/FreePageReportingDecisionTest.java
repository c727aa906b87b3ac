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

/**
 * The manager's rule for free page reporting: reported chunks are discarded only while no holder of either kind is
 * registered; a coordinated holder refuses them even when the guest tells the host before it reuses ballooned pages.
 */
class FreePageReportingDecisionTest {
    private static final long BLOCK = 2L << 20;
    private static final List<AddressRange> CHUNK = List.of(AddressRange.of(4 * BLOCK, BLOCK));
    private static final long CHUNK_PAGES = BLOCK / 4096;
    @RegisterExtension
    static final NativeTestKit KIT = new NativeTestKit();

    private static DiscardState state(ActorRef<DiscardManager.Command> manager) {
        TestProbe<DiscardState> probe = KIT.kit().createTestProbe();
        manager.tell(new DiscardManager.GetState(probe.ref()));
        return probe.receiveMessage();
    }

    private static DiscardManager.Decision report(ActorRef<DiscardManager.Command> manager, ActorRef<?> requester) {
        TestProbe<DiscardManager.Decision> probe = KIT.kit().createTestProbe();
        manager.tell(new DiscardManager.ReportFreePages(requester, CHUNK, CHUNK_PAGES, probe.ref()));
        return probe.receiveMessage();
    }

    @Test
    void withoutHoldersAReportIsDiscardedAndCountedApartFromTheBalloon() {
        ActorRef<DiscardManager.Command> manager = KIT.kit().spawn(DiscardManager.create("fpr", Duration.ofSeconds(5)));
        TestProbe<Object> requester = KIT.kit().createTestProbe();
        DiscardManager.DiscardNow now = (DiscardManager.DiscardNow) report(manager, requester.ref());
        assertEquals(CHUNK, now.ranges());
        manager.tell(new DiscardManager.DiscardDone(now.ticket(), CHUNK_PAGES));
        DiscardState state = state(manager);
        assertEquals(1, state.reportsGranted());
        assertEquals(BLOCK, state.reportedBytesDiscarded());
        assertEquals(0, state.bytesDiscarded(), "a report is not a balloon discard");
        assertEquals(0, state.reportsSkipped());
        assertEquals("", state.lastReportSkipReason());
        KIT.kit().stop(manager);
    }

    @Test
    void anUncoordinatedHolderSkipsReportsAndIsNamed() {
        ActorRef<DiscardManager.Command> manager = KIT.kit().spawn(DiscardManager.create("fpr", Duration.ofSeconds(5)));
        TestProbe<Object> holder = KIT.kit().createTestProbe();
        TestProbe<DiscardManager.RegistrationResult> replies = KIT.kit().createTestProbe();
        manager.tell(new DiscardManager.Register(holder.ref(), "group-7",
                DiscardManager.HolderKind.UNCOORDINATED_DISABLED, Optional.empty(), replies.ref()));
        replies.expectMessageClass(DiscardManager.Registered.class);
        assertEquals(new DiscardManager.Refused(List.of("group-7")), report(manager,
                KIT.kit().createTestProbe().ref()));
        DiscardState state = state(manager);
        assertEquals(1, state.reportsSkipped());
        assertEquals(BLOCK, state.reportedBytesSkipped());
        assertEquals(0, state.reportedBytesDiscarded());
        assertTrue(state.lastReportSkipReason().contains("group-7"), state.lastReportSkipReason());
        assertTrue(state.lastReportSkipReason().contains("without telling the host"), state.lastReportSkipReason());
        KIT.kit().stop(manager);
    }

    @Test
    void aCoordinatedHolderSkipsReportsEvenWithTheGuestContract() {
        ActorRef<DiscardManager.Command> manager = KIT.kit().spawn(DiscardManager.create("fpr", Duration.ofSeconds(5)));
        TestProbe<Object> holder = KIT.kit().createTestProbe();
        TestProbe<DiscardManager.PinOwnerRequest> port = KIT.kit().createTestProbe();
        TestProbe<DiscardManager.RegistrationResult> replies = KIT.kit().createTestProbe();
        manager.tell(new DiscardManager.Register(holder.ref(), "group-9",
                DiscardManager.HolderKind.COORDINATED_REQUIRED,
                Optional.of(new DiscardManager.PinOwner(KIT.kit().createTestProbe().ref(), port.ref(), BLOCK)),
                replies.ref()));
        replies.expectMessageClass(DiscardManager.Registered.class);
        manager.tell(new DiscardManager.SetGuestContract(true));
        assertEquals(new DiscardManager.Refused(List.of("group-9")), report(manager,
                KIT.kit().createTestProbe().ref()));
        port.expectNoMessage(Duration.ofMillis(100));
        DiscardState state = state(manager);
        assertEquals(1, state.reportsSkipped());
        assertEquals(0, state.discardsRefused(), "a skipped report is not a refused balloon discard");
        // The balloon's coordinated path still works beside it: a whole block is released, then discarded.
        TestProbe<DiscardManager.Decision> decision = KIT.kit().createTestProbe();
        manager.tell(new DiscardManager.RequestDiscard(KIT.kit().createTestProbe().ref(), CHUNK, CHUNK_PAGES,
                decision.ref()));
        DiscardManager.ReleaseBlocks release = port.expectMessageClass(DiscardManager.ReleaseBlocks.class);
        release.replyTo().tell(new DiscardManager.BlocksDone("c0"));
        assertInstanceOf(DiscardManager.DiscardNow.class, decision.receiveMessage());
        KIT.kit().stop(manager);
    }
}
