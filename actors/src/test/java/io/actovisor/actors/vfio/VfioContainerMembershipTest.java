package io.actovisor.actors.vfio;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.actors.memory.AddressSpaceActor;
import io.actovisor.actors.memory.MemoryListener;
import io.actovisor.actors.testing.NativeTestKit;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.FlatView;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.MemoryRegion;
import java.util.List;
import java.util.Optional;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * Who holds the container's IOMMU open, against a probe address space: a group that stops is detached like one that
 * leaves, and the last one to go closes the IOMMU; a group attached twice, a detach of a group that is not there and
 * an attach whose subscription the address space refuses are answered with a failure, and the refused first attach
 * leaves the IOMMU closed.
 */
class VfioContainerMembershipTest {
    private static final long PAGE = 4096;
    @RegisterExtension
    static final NativeTestKit KIT = new NativeTestKit();
    private HostMemory memory;

    @AfterEach
    void free() {
        if (memory != null) {
            memory.close();
        }
    }

    private final TestProbe<AddressSpaceActor.Command> space = KIT.kit().createTestProbe();

    private ActorRef<VfioContainerActor.Command> container() {
        return KIT.kit().spawn(VfioContainerActor.create("c0", space.ref(), IommuBackend.model(65535)),
                "members-" + System.nanoTime(), VfioContainerActor.DISPATCHER);
    }

    private VfioContainerActor.AttachResult attach(ActorRef<VfioContainerActor.Command> container, String id,
            ActorRef<?> group) {
        TestProbe<VfioContainerActor.AttachResult> attached = KIT.kit().createTestProbe();
        container.tell(new VfioContainerActor.AttachGroup(id, group, attached.ref()));
        return attached.receiveMessage();
    }

    /** Attach the first group, answer the subscription, and map 8 pages of RAM. */
    private void attachFirst(ActorRef<VfioContainerActor.Command> container, ActorRef<?> group) {
        TestProbe<VfioContainerActor.AttachResult> attached = KIT.kit().createTestProbe();
        container.tell(new VfioContainerActor.AttachGroup("g0", group, attached.ref()));
        AddressSpaceActor.Subscribe subscribe = space.expectMessageClass(AddressSpaceActor.Subscribe.class);
        subscribe.replyTo().tell(new AddressSpaceActor.Subscribed("c0", 0));
        assertEquals(new VfioContainerActor.GroupAttached("c0", "g0", 0), attached.receiveMessage());
        memory = HostMemory.anonymous("members-ram", 8 * PAGE);
        TestProbe<MemoryListener.Reply> replies = KIT.kit().createTestProbe();
        subscribe.listener().tell(new MemoryListener.Update(1, List.of(), FlatView.of(List.of(MemoryRegion.ram("ram",
                AddressRange.of(0, 8 * PAGE), memory, 0))).sections(), false, replies.ref()));
        assertEquals(new MemoryListener.Applied(1, "c0"), replies.receiveMessage());
    }

    private static VfioContainerActor.State state(ActorRef<VfioContainerActor.Command> container) {
        TestProbe<VfioContainerActor.State> probe = KIT.kit().createTestProbe();
        container.tell(new VfioContainerActor.GetState(probe.ref()));
        return probe.receiveMessage();
    }

    @Test
    void aGroupThatStopsIsDetachedAndTheLastOneToStopClosesTheIommu() {
        ActorRef<VfioContainerActor.Command> container = container();
        TestProbe<Object> g0 = KIT.kit().createTestProbe();
        TestProbe<Object> g1 = KIT.kit().createTestProbe();
        attachFirst(container, g0.ref());
        assertEquals(new VfioContainerActor.GroupAttached("c0", "g1", 1), attach(container, "g1", g1.ref()));
        TestProbe<VfioContainerActor.GroupGone> gone = KIT.kit().createTestProbe();
        container.tell(new VfioContainerActor.AwaitGroupGone(g1.ref(), gone.ref()));

        g1.stop();
        assertEquals(new VfioContainerActor.GroupGone("c0", g1.ref()), gone.receiveMessage());
        VfioContainerActor.State one = state(container);
        assertEquals(List.of("g0"), one.groups());
        assertEquals(1, one.mappings().size(), "the IOMMU stays open for the other group");
        assertTrue(one.subscribed());

        g0.stop();
        space.expectMessageClass(AddressSpaceActor.Unsubscribe.class);
        VfioContainerActor.State none = state(container);
        assertEquals(List.of(), none.groups());
        assertEquals(List.of(), none.mappings());
        assertEquals(Optional.empty(), none.info());
        // A group that is gone is answered at once.
        container.tell(new VfioContainerActor.AwaitGroupGone(g0.ref(), gone.ref()));
        assertEquals(new VfioContainerActor.GroupGone("c0", g0.ref()), gone.receiveMessage());
    }

    @Test
    void aGroupThatIsNotTheLastLeavesWithTheIommuOpenAndAWaitForAStrangerIsAnsweredAtOnce() {
        ActorRef<VfioContainerActor.Command> container = container();
        TestProbe<Object> g0 = KIT.kit().createTestProbe();
        attachFirst(container, g0.ref());
        TestProbe<Object> g1 = KIT.kit().createTestProbe();
        assertEquals(new VfioContainerActor.GroupAttached("c0", "g1", 1), attach(container, "g1", g1.ref()));
        TestProbe<VfioContainerActor.GroupGone> gone = KIT.kit().createTestProbe();
        TestProbe<Object> stranger = KIT.kit().createTestProbe();
        container.tell(new VfioContainerActor.AwaitGroupGone(stranger.ref(), gone.ref()));
        assertEquals(new VfioContainerActor.GroupGone("c0", stranger.ref()), gone.receiveMessage());

        TestProbe<VfioContainerActor.DetachResult> detached = KIT.kit().createTestProbe();
        container.tell(new VfioContainerActor.DetachGroup("g1", detached.ref()));
        assertEquals(new VfioContainerActor.GroupDetached("c0", "g1", false), detached.receiveMessage());
        assertEquals(1, state(container).mappings().size());
    }

    @Test
    void attachesAndDetachesArrivingWhileTheFirstGroupSubscribesWaitForIt() {
        ActorRef<VfioContainerActor.Command> container = container();
        TestProbe<VfioContainerActor.AttachResult> first = KIT.kit().createTestProbe();
        TestProbe<VfioContainerActor.AttachResult> second = KIT.kit().createTestProbe();
        TestProbe<VfioContainerActor.DetachResult> detached = KIT.kit().createTestProbe();
        container.tell(new VfioContainerActor.AttachGroup("g0", KIT.kit().createTestProbe().ref(), first.ref()));
        AddressSpaceActor.Subscribe subscribe = space.expectMessageClass(AddressSpaceActor.Subscribe.class);
        container.tell(new VfioContainerActor.AttachGroup("g1", KIT.kit().createTestProbe().ref(), second.ref()));
        container.tell(new VfioContainerActor.DetachGroup("g9", detached.ref()));
        second.expectNoMessage(java.time.Duration.ofMillis(100));
        subscribe.replyTo().tell(new AddressSpaceActor.Subscribed("c0", 0));
        assertEquals(new VfioContainerActor.GroupAttached("c0", "g0", 0), first.receiveMessage());
        assertEquals(new VfioContainerActor.GroupAttached("c0", "g1", 0), second.receiveMessage());
        assertEquals(new VfioContainerActor.GroupDetachFailed("c0", "g9", "group g9 is not attached to container c0"),
                detached.receiveMessage());
    }

    @Test
    void aGroupTheIommuRefusesToJoinIsAnsweredWithTheReasonAndTheOthersStay() {
        ActorRef<VfioContainerActor.Command> container = KIT.kit().spawn(VfioContainerActor.create("c0", space.ref(),
                new ContainerDmaOrdersTest.CueBackend(new ContainerDmaOrdersTest.CueIommu("model", 65535,
                        java.util.Set.of(), java.util.Set.of()))), "members-" + System.nanoTime(),
                VfioContainerActor.DISPATCHER);
        attachFirst(container, KIT.kit().createTestProbe().ref());
        assertEquals(new VfioContainerActor.GroupAttachFailed("c0", "bad", "container c0 cannot attach group bad "
                + "(model): cannot attach group bad"), attach(container, "bad", KIT.kit().createTestProbe().ref()));
        assertEquals(List.of("g0"), state(container).groups());
    }

    @Test
    void aGroupAttachedTwiceOrDetachedWithoutBeingAttachedIsRefusedAndNothingChanges() {
        ActorRef<VfioContainerActor.Command> container = container();
        TestProbe<Object> g0 = KIT.kit().createTestProbe();
        TestProbe<VfioContainerActor.DetachResult> detached = KIT.kit().createTestProbe();
        container.tell(new VfioContainerActor.DetachGroup("g0", detached.ref()));
        assertEquals(new VfioContainerActor.GroupDetachFailed("c0", "g0", "group g0 is not attached to container c0"),
                detached.receiveMessage());

        attachFirst(container, g0.ref());
        assertEquals(new VfioContainerActor.GroupAttachFailed("c0", "g0", "group g0 is already attached to container "
                + "c0"), attach(container, "g0", g0.ref()));
        container.tell(new VfioContainerActor.DetachGroup("g9", detached.ref()));
        assertEquals(new VfioContainerActor.GroupDetachFailed("c0", "g9", "group g9 is not attached to container c0"),
                detached.receiveMessage());
        VfioContainerActor.State state = state(container);
        assertEquals(List.of("g0"), state.groups());
        assertEquals(1, state.mappings().size());
        space.expectNoMessage(java.time.Duration.ofMillis(50));
    }

    @Test
    void anAttachTheIommuRefusesIsAnsweredWithTheIommusReasonAndLeavesItClosed() {
        // A coordinated container whose block (2 KiB) is smaller than the model IOMMU's 4 KiB page.
        ActorRef<VfioContainerActor.Command> container = KIT.kit().spawn(VfioContainerActor.create("c0", space.ref(),
                IommuBackend.model(65535), io.actovisor.actors.discard.DiscardMode.COORDINATED, PAGE / 2),
                "members-" + System.nanoTime(), VfioContainerActor.DISPATCHER);
        assertEquals(new VfioContainerActor.GroupAttachFailed("c0", "g0", "container c0 cannot attach group g0 "
                + "(model): discard-block-size 2048 is smaller than the IOMMU's minimum page size 4096"),
                attach(container, "g0", KIT.kit().createTestProbe().ref()));
        assertEquals(Optional.empty(), state(container).info());
        space.expectNoMessage(java.time.Duration.ofMillis(50)); // nothing was subscribed
    }

    @Test
    void aFirstAttachWhoseSubscriptionIsRefusedClosesTheIommuAgainAndALaterAttachOpensItAfresh() {
        ActorRef<VfioContainerActor.Command> container = container();
        TestProbe<VfioContainerActor.AttachResult> attached = KIT.kit().createTestProbe();
        container.tell(new VfioContainerActor.AttachGroup("g0", KIT.kit().createTestProbe().ref(), attached.ref()));
        AddressSpaceActor.Subscribe subscribe = space.expectMessageClass(AddressSpaceActor.Subscribe.class);
        subscribe.replyTo().tell(new AddressSpaceActor.SubscribeFailed("c0", "listener c0 is already subscribed"));
        assertEquals(new VfioContainerActor.GroupAttachFailed("c0", "g0", "container c0 cannot map guest memory for "
                + "group g0: listener c0 is already subscribed"), attached.receiveMessage());
        VfioContainerActor.State state = state(container);
        assertEquals(Optional.empty(), state.info(), "the IOMMU opened for the attach is closed again");
        assertEquals(List.of(), state.groups());
        assertEquals(false, state.subscribed());
        space.expectNoMessage(java.time.Duration.ofMillis(50)); // never subscribed, so nothing to unsubscribe

        attachFirst(container, KIT.kit().createTestProbe().ref());
        assertTrue(state(container).info().isPresent());
    }
}
