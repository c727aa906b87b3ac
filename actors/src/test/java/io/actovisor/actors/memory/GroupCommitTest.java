package io.actovisor.actors.memory;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.memory.AddressRange;
import io.actovisor.memory.MemoryRegion;
import io.actovisor.memory.Section;
import java.time.Duration;
import java.util.List;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;

/**
 * Group commit: commits queued behind the update in flight reach the listeners as one update, every committer is
 * answered in order, and a refused or invalid group is applied again one commit at a time so that exactly the bad
 * commit fails.
 */
class GroupCommitTest {
    private static final ActorTestKit KIT = ActorTestKit.create();
    private static int spaces;

    @AfterAll
    static void stop() {
        KIT.shutdownTestKit();
    }

    private static MemoryRegion mmio(String name, long base) {
        return MemoryRegion.mmio(name, AddressRange.of(base, 0x1000), name);
    }

    private static AddressSpaceActor.Commit add(String name, long base, TestProbe<AddressSpaceActor.CommitResult> to) {
        return new AddressSpaceActor.Commit(List.of(new AddressSpaceActor.AddRegion(mmio(name, base))), to.ref());
    }

    private static ActorRef<AddressSpaceActor.Command> space() {
        return KIT.spawn(AddressSpaceActor.create("gc" + spaces, Duration.ofSeconds(5)), "gc" + spaces++);
    }

    private static TestProbe<MemoryListener.Update> subscribe(ActorRef<AddressSpaceActor.Command> space) {
        TestProbe<MemoryListener.Update> listener = KIT.createTestProbe();
        TestProbe<AddressSpaceActor.SubscribeResult> result = KIT.createTestProbe();
        space.tell(new AddressSpaceActor.Subscribe("l", 0, listener.ref(), listener.ref(), result.ref()));
        MemoryListener.Update initial = listener.receiveMessage();
        apply(initial);
        assertInstanceOf(AddressSpaceActor.Subscribed.class, result.receiveMessage());
        return listener;
    }

    private static void apply(MemoryListener.Update update) {
        update.replyTo().tell(new MemoryListener.Applied(update.commitId(), "l"));
    }

    private static void refuse(MemoryListener.Update update) {
        update.replyTo().tell(new MemoryListener.Refused(update.commitId(), "l", "no room for it"));
    }

    private static List<Long> bases(List<Section> sections) {
        return sections.stream().map(s -> s.range().base()).toList();
    }

    /** Send the first commit and keep its update unanswered, so what follows queues behind it. */
    private static MemoryListener.Update holdFirst(ActorRef<AddressSpaceActor.Command> space,
            TestProbe<MemoryListener.Update> listener, TestProbe<AddressSpaceActor.CommitResult> committer) {
        space.tell(add("first", 0x1000, committer));
        return listener.receiveMessage();
    }

    @Test
    void queuedCommitsReachTheListenerAsOneUpdateAndAreAnsweredInOrder() {
        ActorRef<AddressSpaceActor.Command> space = space();
        TestProbe<MemoryListener.Update> listener = subscribe(space);
        TestProbe<AddressSpaceActor.CommitResult> committer = KIT.createTestProbe();
        MemoryListener.Update first = holdFirst(space, listener, committer);
        space.tell(add("a", 0x4000, committer));
        space.tell(add("b", 0x8000, committer));
        space.tell(new AddressSpaceActor.Commit(List.of(new AddressSpaceActor.RemoveRegion("a")), committer.ref()));
        space.tell(add("c", 0xc000, committer));
        listener.expectNoMessage(Duration.ofMillis(100));
        apply(first);
        AddressSpaceActor.CommitResult firstResult = committer.receiveMessage();
        assertEquals(new AddressSpaceActor.Committed(first.commitId(), 0, 1), firstResult);

        // One update with the net change of the four: a was added and removed again, so only b and c remain.
        MemoryListener.Update group = listener.receiveMessage();
        assertEquals(List.of(), group.regionDel());
        assertEquals(List.of(0x8000L, 0xc000L), bases(group.regionAdd()));
        listener.expectNoMessage(Duration.ofMillis(100));
        apply(group);
        for (long id = first.commitId() + 1; id <= first.commitId() + 4; id++) {
            assertEquals(new AddressSpaceActor.Committed(id, 0, 2), committer.receiveMessage());
        }
        assertEquals(group.commitId(), first.commitId() + 4);
        TestProbe<AddressSpaceActor.View> view = KIT.createTestProbe();
        space.tell(new AddressSpaceActor.GetView(view.ref()));
        assertEquals(List.of("first", "b", "c"), view.receiveMessage().regions().stream().map(MemoryRegion::name)
                .toList());
    }

    @Test
    void aRefusedGroupIsAppliedOneByOneSoOnlyTheRefusedCommitFails() {
        ActorRef<AddressSpaceActor.Command> space = space();
        TestProbe<MemoryListener.Update> listener = subscribe(space);
        TestProbe<AddressSpaceActor.CommitResult> committer = KIT.createTestProbe();
        MemoryListener.Update first = holdFirst(space, listener, committer);
        space.tell(add("a", 0x4000, committer));
        space.tell(add("bad", 0x8000, committer));
        space.tell(add("c", 0xc000, committer));
        apply(first);
        assertInstanceOf(AddressSpaceActor.Committed.class, committer.receiveMessage());

        MemoryListener.Update group = listener.receiveMessage();
        assertEquals(List.of(0x4000L, 0x8000L, 0xc000L), bases(group.regionAdd()));
        refuse(group);
        // Then one update per commit: the listener refuses only the one with "bad".
        MemoryListener.Update a = listener.receiveMessage();
        assertEquals(List.of(0x4000L), bases(a.regionAdd()));
        apply(a);
        MemoryListener.Update bad = listener.receiveMessage();
        assertEquals(List.of(0x8000L), bases(bad.regionAdd()));
        refuse(bad);
        MemoryListener.Update c = listener.receiveMessage();
        assertEquals(List.of(0xc000L), bases(c.regionAdd()));
        apply(c);

        assertEquals(new AddressSpaceActor.Committed(a.commitId(), 0, 1), committer.receiveMessage());
        AddressSpaceActor.CommitResult refused = committer.receiveMessage();
        assertInstanceOf(AddressSpaceActor.CommitFailed.class, refused);
        assertEquals(bad.commitId(), refused.commitId());
        assertEquals(new AddressSpaceActor.Committed(c.commitId(), 0, 1), committer.receiveMessage());
        assertTrue(a.commitId() < bad.commitId() && bad.commitId() < c.commitId());
        TestProbe<AddressSpaceActor.View> view = KIT.createTestProbe();
        space.tell(new AddressSpaceActor.GetView(view.ref()));
        assertEquals(List.of("first", "a", "c"), view.receiveMessage().regions().stream().map(MemoryRegion::name)
                .toList());
    }

    @Test
    void anInvalidCommitInAGroupIsRefusedAloneAndTheOthersApply() {
        ActorRef<AddressSpaceActor.Command> space = space();
        TestProbe<MemoryListener.Update> listener = subscribe(space);
        TestProbe<AddressSpaceActor.CommitResult> committer = KIT.createTestProbe();
        MemoryListener.Update first = holdFirst(space, listener, committer);
        space.tell(add("a", 0x4000, committer));
        space.tell(new AddressSpaceActor.Commit(List.of(new AddressSpaceActor.RemoveRegion("missing")),
                committer.ref()));
        space.tell(add("c", 0xc000, committer));
        apply(first);
        assertInstanceOf(AddressSpaceActor.Committed.class, committer.receiveMessage());

        MemoryListener.Update a = listener.receiveMessage();
        assertEquals(List.of(0x4000L), bases(a.regionAdd()));
        apply(a);
        assertEquals(new AddressSpaceActor.Committed(a.commitId(), 0, 1), committer.receiveMessage());
        AddressSpaceActor.CommitResult invalid = committer.receiveMessage();
        assertInstanceOf(AddressSpaceActor.CommitFailed.class, invalid);
        assertEquals("address-space", ((AddressSpaceActor.CommitFailed) invalid).listener());
        MemoryListener.Update c = listener.receiveMessage();
        assertEquals(List.of(0xc000L), bases(c.regionAdd()));
        apply(c);
        assertEquals(new AddressSpaceActor.Committed(c.commitId(), 0, 1), committer.receiveMessage());
    }

    @Test
    void aSubscriptionQueuedBetweenCommitsSeesTheFirstGroupAndNotTheSecond() {
        ActorRef<AddressSpaceActor.Command> space = space();
        TestProbe<MemoryListener.Update> listener = subscribe(space);
        TestProbe<AddressSpaceActor.CommitResult> committer = KIT.createTestProbe();
        MemoryListener.Update first = holdFirst(space, listener, committer);
        space.tell(add("a", 0x4000, committer));
        TestProbe<MemoryListener.Update> late = KIT.createTestProbe();
        TestProbe<AddressSpaceActor.SubscribeResult> subscribed = KIT.createTestProbe();
        space.tell(new AddressSpaceActor.Subscribe("late", 1, late.ref(), late.ref(), subscribed.ref()));
        space.tell(add("b", 0x8000, committer));
        apply(first);
        assertInstanceOf(AddressSpaceActor.Committed.class, committer.receiveMessage());
        MemoryListener.Update a = listener.receiveMessage();
        assertEquals(List.of(0x4000L), bases(a.regionAdd()));
        apply(a);
        assertInstanceOf(AddressSpaceActor.Committed.class, committer.receiveMessage());
        // The subscriber's initial view holds first and a; b comes to both listeners afterwards.
        MemoryListener.Update initial = late.receiveMessage();
        assertEquals(List.of(0x1000L, 0x4000L), bases(initial.regionAdd()));
        initial.replyTo().tell(new MemoryListener.Applied(initial.commitId(), "late"));
        assertInstanceOf(AddressSpaceActor.Subscribed.class, subscribed.receiveMessage());
        MemoryListener.Update b = listener.receiveMessage();
        assertEquals(List.of(0x8000L), bases(b.regionAdd()));
        apply(b);
        MemoryListener.Update lateB = late.receiveMessage();
        assertEquals(List.of(0x8000L), bases(lateB.regionAdd()));
        lateB.replyTo().tell(new MemoryListener.Applied(lateB.commitId(), "late"));
        assertInstanceOf(AddressSpaceActor.Committed.class, committer.receiveMessage());
    }
}
