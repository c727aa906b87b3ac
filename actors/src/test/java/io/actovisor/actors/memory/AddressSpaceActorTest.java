package io.actovisor.actors.memory;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.actors.events.ActovisorEvent;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.FlatView;
import io.actovisor.memory.MemoryRegion;
import io.actovisor.memory.Section;
import java.time.Duration;
import java.util.List;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.FishingOutcomes;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.eventstream.EventStream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;

/** Commits against probe listeners: one update per commit, ordering, refusal and rollback, stopped listeners. */
class AddressSpaceActorTest {
    private static final ActorTestKit KIT = ActorTestKit.create();
    private static int spaces;

    @AfterAll
    static void stop() {
        KIT.shutdownTestKit();
    }

    private static MemoryRegion mmio(String name, long base, long size) {
        return MemoryRegion.mmio(name, AddressRange.of(base, size), name);
    }

    private static ActorRef<AddressSpaceActor.Command> space(Duration ackTimeout) {
        return KIT.spawn(AddressSpaceActor.create("as" + spaces, ackTimeout), "as" + spaces++);
    }

    private static TestProbe<MemoryListener.Update> subscribe(ActorRef<AddressSpaceActor.Command> space, String name,
            int priority) {
        TestProbe<MemoryListener.Update> listener = KIT.createTestProbe();
        TestProbe<AddressSpaceActor.SubscribeResult> result = KIT.createTestProbe();
        space.tell(new AddressSpaceActor.Subscribe(name, priority, listener.ref(), listener.ref(), result.ref()));
        MemoryListener.Update initial = listener.receiveMessage();
        initial.replyTo().tell(new MemoryListener.Applied(initial.commitId(), name));
        assertInstanceOf(AddressSpaceActor.Subscribed.class, result.receiveMessage());
        return listener;
    }

    private static void apply(MemoryListener.Update update, String listener) {
        update.replyTo().tell(new MemoryListener.Applied(update.commitId(), listener));
    }

    @Test
    void oneUpdatePerCommitWithEveryChange() {
        ActorRef<AddressSpaceActor.Command> space = space(Duration.ofSeconds(5));
        TestProbe<MemoryListener.Update> listener = subscribe(space, "l", 0);
        TestProbe<AddressSpaceActor.CommitResult> committer = KIT.createTestProbe();
        space.tell(new AddressSpaceActor.Commit(List.of(new AddressSpaceActor.AddRegion(mmio("a", 0x1000, 0x1000)),
                new AddressSpaceActor.AddRegion(mmio("b", 0x4000, 0x1000)),
                new AddressSpaceActor.AddRegion(mmio("c", 0x8000, 0x1000))), committer.ref()));
        MemoryListener.Update update = listener.receiveMessage();
        assertEquals(3, update.regionAdd().size());
        assertEquals(List.of(), update.regionDel());
        listener.expectNoMessage(Duration.ofMillis(50));
        apply(update, "l");
        assertEquals(new AddressSpaceActor.Committed(update.commitId(), 0, 3), committer.receiveMessage());

        // Replacing "b" by a bigger region: the old section is removed and the new one added, in one update.
        space.tell(new AddressSpaceActor.Commit(List.of(new AddressSpaceActor.RemoveRegion("b"),
                new AddressSpaceActor.AddRegion(mmio("b2", 0x4000, 0x2000))), committer.ref()));
        MemoryListener.Update replace = listener.receiveMessage();
        assertEquals(List.of(AddressRange.of(0x4000, 0x1000)), replace.regionDel().stream().map(Section::range)
                .toList());
        assertEquals(List.of(AddressRange.of(0x4000, 0x2000)), replace.regionAdd().stream().map(Section::range)
                .toList());
        apply(replace, "l");
        assertInstanceOf(AddressSpaceActor.Committed.class, committer.receiveMessage());
    }

    @Test
    void commitsApplyOneAtATimeInOrder() {
        ActorRef<AddressSpaceActor.Command> space = space(Duration.ofSeconds(5));
        TestProbe<MemoryListener.Update> listener = subscribe(space, "l", 0);
        TestProbe<AddressSpaceActor.CommitResult> committer = KIT.createTestProbe();
        for (int i = 0; i < 5; i++) {
            space.tell(new AddressSpaceActor.Commit(List.of(new AddressSpaceActor.AddRegion(
                    mmio("r" + i, 0x10000L * (i + 1), 0x1000))), committer.ref()));
        }
        // The first goes alone; the four queued behind it go as one update (group commit), answered in order.
        MemoryListener.Update update = listener.receiveMessage();
        listener.expectNoMessage(Duration.ofMillis(20));
        assertEquals(List.of(0x10000L), update.regionAdd().stream().map(s -> s.range().base()).toList());
        apply(update, "l");
        assertEquals(update.commitId(), committer.receiveMessage().commitId());
        MemoryListener.Update group = listener.receiveMessage();
        listener.expectNoMessage(Duration.ofMillis(20));
        assertEquals(List.of(0x20000L, 0x30000L, 0x40000L, 0x50000L), group.regionAdd().stream()
                .map(s -> s.range().base()).toList(), "commits 1 to 4 in order");
        assertTrue(group.commitId() > update.commitId());
        apply(group, "l");
        for (int i = 1; i < 5; i++) {
            assertEquals(update.commitId() + i, committer.receiveMessage().commitId());
        }
    }

    @Test
    void aRefusalFailsTheWholeCommitAndRollsBackEarlierListeners() {
        ActorRef<AddressSpaceActor.Command> space = space(Duration.ofSeconds(5));
        TestProbe<MemoryListener.Update> first = subscribe(space, "kvm", 0);
        TestProbe<MemoryListener.Update> second = subscribe(space, "vfio", 10);
        TestProbe<ActovisorEvent.TopologyRefused> refusals = KIT.createTestProbe();
        KIT.system().eventStream().tell(new EventStream.Subscribe<>(ActovisorEvent.TopologyRefused.class,
                refusals.ref()));
        TestProbe<AddressSpaceActor.CommitResult> committer = KIT.createTestProbe();
        space.tell(new AddressSpaceActor.Commit(List.of(new AddressSpaceActor.AddRegion(mmio("a", 0, 0x1000))),
                committer.ref()));
        MemoryListener.Update applied = first.receiveMessage();
        second.expectNoMessage(Duration.ofMillis(20));
        apply(applied, "kvm");
        MemoryListener.Update refused = second.receiveMessage();
        refused.replyTo().tell(new MemoryListener.Refused(refused.commitId(), "vfio", "mapping limit 1 reached"));
        MemoryListener.Update rollback = first.receiveMessage();
        assertTrue(rollback.rollback());
        assertEquals(applied.regionAdd(), rollback.regionDel(), "the rollback removes what the commit added");
        assertEquals(List.of(), rollback.regionAdd());
        committer.expectNoMessage(Duration.ofMillis(20));
        apply(rollback, "kvm");
        AddressSpaceActor.CommitFailed failed = (AddressSpaceActor.CommitFailed) committer.receiveMessage();
        assertEquals("vfio", failed.listener());
        assertEquals("mapping limit 1 reached", failed.reason());
        // the event stream is shared with the other tests' spaces, whose refusals may arrive late: skip theirs
        String spaceName = "as" + (spaces - 1);
        ActovisorEvent.TopologyRefused refusal = (ActovisorEvent.TopologyRefused) refusals.fishForMessage(
                Duration.ofSeconds(3), event -> event.addressSpace().equals(spaceName)
                        ? FishingOutcomes.complete() : FishingOutcomes.continueAndIgnore()).get(0);
        assertEquals("vfio", refusal.listener());
        TestProbe<AddressSpaceActor.View> view = KIT.createTestProbe();
        space.tell(new AddressSpaceActor.GetView(view.ref()));
        assertEquals(FlatView.empty(), view.receiveMessage().flatView(), "a failed commit changes nothing");
    }

    @Test
    void invalidCommitsAreRefusedNamingTheRegion() {
        ActorRef<AddressSpaceActor.Command> space = space(Duration.ofSeconds(5));
        TestProbe<AddressSpaceActor.CommitResult> committer = KIT.createTestProbe();
        space.tell(new AddressSpaceActor.Commit(List.of(new AddressSpaceActor.RemoveRegion("ghost"),
                new AddressSpaceActor.AddRegion(mmio("a", 0, 0x1000)),
                new AddressSpaceActor.AddRegion(mmio("a", 0x2000, 0x1000))), committer.ref()));
        AddressSpaceActor.CommitFailed failed = (AddressSpaceActor.CommitFailed) committer.receiveMessage();
        assertEquals("address-space", failed.listener());
        assertTrue(failed.reason().contains("'ghost' does not exist"), failed.reason());
        assertTrue(failed.reason().contains("'a' already exists"), failed.reason());
    }

    @Test
    void newListenersGetTheCurrentViewAndNamesAreUnique() {
        ActorRef<AddressSpaceActor.Command> space = space(Duration.ofSeconds(5));
        TestProbe<AddressSpaceActor.CommitResult> committer = KIT.createTestProbe();
        space.tell(new AddressSpaceActor.Commit(List.of(new AddressSpaceActor.AddRegion(mmio("a", 0, 0x1000))),
                committer.ref()));
        committer.receiveMessage();
        TestProbe<MemoryListener.Update> late = KIT.createTestProbe();
        TestProbe<AddressSpaceActor.SubscribeResult> result = KIT.createTestProbe();
        space.tell(new AddressSpaceActor.Subscribe("late", 0, late.ref(), late.ref(), result.ref()));
        MemoryListener.Update initial = late.receiveMessage();
        assertEquals(1, initial.regionAdd().size());
        apply(initial, "late");
        assertInstanceOf(AddressSpaceActor.Subscribed.class, result.receiveMessage());
        space.tell(new AddressSpaceActor.Subscribe("late", 0, late.ref(), late.ref(), result.ref()));
        assertInstanceOf(AddressSpaceActor.SubscribeFailed.class, result.receiveMessage());
    }

    @Test
    void aListenerThatStopsMidCommitNoLongerHoldsItUp() {
        ActorRef<AddressSpaceActor.Command> space = space(Duration.ofSeconds(30));
        TestProbe<MemoryListener.Update> doomed = subscribe(space, "doomed", 0);
        TestProbe<MemoryListener.Update> other = subscribe(space, "other", 1);
        TestProbe<AddressSpaceActor.CommitResult> committer = KIT.createTestProbe();
        space.tell(new AddressSpaceActor.Commit(List.of(new AddressSpaceActor.AddRegion(mmio("a", 0, 0x1000))),
                committer.ref()));
        doomed.receiveMessage();
        doomed.stop();
        apply(other.receiveMessage(), "other");
        assertInstanceOf(AddressSpaceActor.Committed.class, committer.receiveMessage());
        TestProbe<AddressSpaceActor.View> view = KIT.createTestProbe();
        space.tell(new AddressSpaceActor.GetView(view.ref()));
        assertEquals(List.of("other"), view.receiveMessage().listeners());
    }

    @Test
    void aSilentListenerFailsTheCommitAfterTheAckTimeout() {
        ActorRef<AddressSpaceActor.Command> space = space(Duration.ofMillis(200));
        TestProbe<MemoryListener.Update> silent = subscribe(space, "silent", 0);
        TestProbe<AddressSpaceActor.CommitResult> committer = KIT.createTestProbe();
        space.tell(new AddressSpaceActor.Commit(List.of(new AddressSpaceActor.AddRegion(mmio("a", 0, 0x1000))),
                committer.ref()));
        silent.receiveMessage();
        AddressSpaceActor.CommitFailed failed = (AddressSpaceActor.CommitFailed) committer.receiveMessage(
                Duration.ofSeconds(5));
        assertTrue(failed.reason().contains("did not acknowledge"), failed.reason());
    }
}
