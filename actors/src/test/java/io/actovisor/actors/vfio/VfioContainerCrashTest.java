package io.actovisor.actors.vfio;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;

import io.actovisor.actors.discard.DiscardManager;
import io.actovisor.actors.memory.AddressSpaceActor;
import io.actovisor.actors.memory.MemoryListener;
import io.actovisor.actors.testing.NativeTestKit;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.FlatView;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.MemoryRegion;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * When the container's IOMMU side crashes, the container answers everyone it owes an answer before it stops: the
 * managers and callers waiting for a group to be gone, an attach waiting for its subscription, and the pin-owner
 * requests and group waits queued behind an order. (Complements {@code IommuOwnerTest}, which crashes it mid-update
 * with an update, a report, an attach and a detach queued.)
 */
class VfioContainerCrashTest {
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

    private ActorRef<VfioContainerActor.Command> container(IommuOwnerTest.WatchedIommu iommu) {
        return KIT.kit().spawn(VfioContainerActor.create("c0", space.ref(), IommuBackend.shared("watched",
                () -> iommu)), "crash-" + System.nanoTime(), VfioContainerActor.DISPATCHER);
    }

    private static DiscardManager.PinOwner pinOwner(ActorRef<VfioContainerActor.Command> container) {
        TestProbe<VfioContainerActor.Description> described = KIT.kit().createTestProbe();
        container.tell(new VfioContainerActor.Describe(described.ref()));
        return described.receiveMessage().pinOwner();
    }

    /** A user unmap that hits the watched IOMMU's injected backend bug: the IOMMU side answers it and crashes. */
    private static void crash(ActorRef<VfioContainerActor.Command> container) {
        TestProbe<ContainerDmaActor.UnmapResult> unmapped = KIT.kit().createTestProbe();
        container.tell(new VfioContainerActor.Dma(new ContainerDmaActor.UnmapDma(AddressRange.of(1L << 30, PAGE),
                unmapped.ref())));
        assertInstanceOf(ContainerDmaActor.DmaFailed.class, unmapped.receiveMessage());
    }

    @Test
    void aCrashWithNothingPendingTellsEveryoneWaitingForAnAttachedGroupThatItIsGone() {
        IommuOwnerTest.WatchedIommu iommu = new IommuOwnerTest.WatchedIommu(65535);
        ActorRef<VfioContainerActor.Command> container = container(iommu);
        TestProbe<Object> group = KIT.kit().createTestProbe();
        TestProbe<VfioContainerActor.AttachResult> attached = KIT.kit().createTestProbe();
        container.tell(new VfioContainerActor.AttachGroup("g0", group.ref(), attached.ref()));
        AddressSpaceActor.Subscribe subscribe = space.expectMessageClass(AddressSpaceActor.Subscribe.class);
        subscribe.replyTo().tell(new AddressSpaceActor.Subscribed("c0", 0));
        assertEquals(new VfioContainerActor.GroupAttached("c0", "g0", 0), attached.receiveMessage());

        TestProbe<VfioContainerActor.GroupGone> gone = KIT.kit().createTestProbe();
        TestProbe<DiscardManager.PinsGone> pinsGone = KIT.kit().createTestProbe();
        container.tell(new VfioContainerActor.AwaitGroupGone(group.ref(), gone.ref()));
        pinOwner(container).port().tell(new DiscardManager.AwaitPinsGone(group.ref(), pinsGone.ref()));
        iommu.bugOnUnmapAt = 1L << 30;
        crash(container);
        assertEquals(new VfioContainerActor.GroupGone("c0", group.ref()), gone.receiveMessage());
        assertEquals(new DiscardManager.PinsGone("c0", group.ref()), pinsGone.receiveMessage());
        KIT.kit().createTestProbe().expectTerminated(container);
        assertEquals(1, iommu.closes.get());
    }

    @Test
    void aCrashWhileTheFirstAttachWaitsForItsSubscriptionFailsTheAttach() {
        IommuOwnerTest.WatchedIommu iommu = new IommuOwnerTest.WatchedIommu(65535);
        ActorRef<VfioContainerActor.Command> container = container(iommu);
        TestProbe<VfioContainerActor.AttachResult> attached = KIT.kit().createTestProbe();
        container.tell(new VfioContainerActor.AttachGroup("g0", KIT.kit().createTestProbe().ref(), attached.ref()));
        space.expectMessageClass(AddressSpaceActor.Subscribe.class); // and never answered
        iommu.bugOnUnmapAt = 1L << 30;
        crash(container);
        VfioContainerActor.GroupAttachFailed failed = assertInstanceOf(VfioContainerActor.GroupAttachFailed.class,
                attached.receiveMessage());
        assertEquals("container c0 lost its IOMMU side (it stopped; the IOMMU is closed)", failed.reason());
        KIT.kit().createTestProbe().expectTerminated(container);
    }

    @Test
    void requestsQueuedBehindAnOrderWhenTheSideCrashesAreEachAnswered() {
        IommuOwnerTest.WatchedIommu iommu = new IommuOwnerTest.WatchedIommu(65535);
        memory = HostMemory.anonymous("crash-ram", 32 * PAGE);
        ActorRef<VfioContainerActor.Command> container = container(iommu);
        TestProbe<Object> group = KIT.kit().createTestProbe();
        TestProbe<VfioContainerActor.AttachResult> attached = KIT.kit().createTestProbe();
        container.tell(new VfioContainerActor.AttachGroup("g0", group.ref(), attached.ref()));
        AddressSpaceActor.Subscribe subscribe = space.expectMessageClass(AddressSpaceActor.Subscribe.class);
        subscribe.replyTo().tell(new AddressSpaceActor.Subscribed("c0", 0));
        attached.receiveMessage();
        DiscardManager.PinOwner owner = pinOwner(container);

        // The update maps d, is refused at c (after the gate), and undoing d hits a backend bug: the side crashes.
        iommu.refuseMapAt = 16 * PAGE;
        iommu.bugOnUnmapAt = 8 * PAGE;
        CountDownLatch gate = new CountDownLatch(1);
        iommu.beforeRefusal = gate;
        TestProbe<MemoryListener.Reply> replies = KIT.kit().createTestProbe();
        subscribe.listener().tell(new MemoryListener.Update(1, List.of(), FlatView.of(List.of(
                MemoryRegion.ram("d", AddressRange.of(8 * PAGE, 4 * PAGE), memory, 8 * PAGE),
                MemoryRegion.ram("c", AddressRange.of(16 * PAGE, 4 * PAGE), memory, 16 * PAGE))).sections(), false,
                replies.ref()));
        List<AddressRange> blocks = List.of(AddressRange.of(0, 2L << 20));
        TestProbe<DiscardManager.BlockReply> released = KIT.kit().createTestProbe();
        TestProbe<DiscardManager.BlockReply> restored = KIT.kit().createTestProbe();
        TestProbe<DiscardManager.PinsGone> pinsGone = KIT.kit().createTestProbe();
        TestProbe<VfioContainerActor.GroupGone> gone = KIT.kit().createTestProbe();
        TestProbe<VfioContainerActor.DetachResult> detached = KIT.kit().createTestProbe();
        owner.port().tell(new DiscardManager.ReleaseBlocks(blocks, released.ref()));
        owner.port().tell(new DiscardManager.RestoreBlocks(blocks, restored.ref()));
        owner.port().tell(new DiscardManager.AwaitPinsGone(group.ref(), pinsGone.ref()));
        container.tell(new VfioContainerActor.AwaitGroupGone(group.ref(), gone.ref()));
        container.tell(new VfioContainerActor.DetachGroup("g9", detached.ref()));
        gate.countDown();

        assertInstanceOf(MemoryListener.Refused.class, replies.receiveMessage());
        String reason = "container c0 lost its IOMMU side (it stopped; the IOMMU is closed)";
        assertEquals(new DiscardManager.BlocksFailed("c0", blocks, reason), released.receiveMessage());
        assertEquals(new DiscardManager.BlocksFailed("c0", blocks, reason), restored.receiveMessage());
        assertEquals(new DiscardManager.PinsGone("c0", group.ref()), pinsGone.receiveMessage());
        assertEquals(new VfioContainerActor.GroupGone("c0", group.ref()), gone.receiveMessage());
        assertEquals(new VfioContainerActor.GroupDetachFailed("c0", "g9", "group g9 is not attached to container c0"),
                detached.receiveMessage());
        KIT.kit().createTestProbe().expectTerminated(container);
        assertEquals(1, iommu.closes.get(), "closed once");
    }

    private static final String LOST = "container c0 lost its IOMMU side (it stopped; the IOMMU is closed)";

    /** A container on a backend whose calls can throw an {@link AssertionError}, with group g0 attached. */
    private final class Buggy {
        final ContainerDmaOrdersTest.CueIommu iommu = new ContainerDmaOrdersTest.CueIommu("model", 65535,
                java.util.Set.of(), java.util.Set.of());
        final ContainerDmaOrdersTest.CueBackend backend = new ContainerDmaOrdersTest.CueBackend(iommu);
        final TestProbe<Object> g0 = KIT.kit().createTestProbe();
        final ActorRef<VfioContainerActor.Command> container = KIT.kit().spawn(VfioContainerActor.create("c0",
                space.ref(), backend, io.actovisor.actors.discard.DiscardMode.COORDINATED, 4 * PAGE),
                "buggy-" + System.nanoTime(), VfioContainerActor.DISPATCHER);

        Buggy attachFirst() {
            TestProbe<VfioContainerActor.AttachResult> attached = KIT.kit().createTestProbe();
            container.tell(new VfioContainerActor.AttachGroup("g0", g0.ref(), attached.ref()));
            space.expectMessageClass(AddressSpaceActor.Subscribe.class).replyTo()
                    .tell(new AddressSpaceActor.Subscribed("c0", 0));
            assertEquals(new VfioContainerActor.GroupAttached("c0", "g0", 0), attached.receiveMessage());
            return this;
        }

        VfioContainerActor.AttachResult attach(String id, ActorRef<?> group) {
            TestProbe<VfioContainerActor.AttachResult> attached = KIT.kit().createTestProbe();
            container.tell(new VfioContainerActor.AttachGroup(id, group, attached.ref()));
            return attached.receiveMessage();
        }

        void stops() {
            KIT.kit().createTestProbe().expectTerminated(container);
        }
    }

    @Test
    void aSideThatCrashesWhileOpeningOrJoiningFailsTheAttach() {
        Buggy opening = new Buggy();
        opening.backend.errorOn = "open";
        assertEquals(new VfioContainerActor.GroupAttachFailed("c0", "g0", LOST),
                opening.attach("g0", opening.g0.ref()));
        opening.stops();

        Buggy joining = new Buggy().attachFirst();
        joining.backend.errorOn = "attach";
        assertEquals(new VfioContainerActor.GroupAttachFailed("c0", "g1", LOST),
                joining.attach("g1", KIT.kit().createTestProbe().ref()));
        joining.stops();

        // The join works, and the report that completes the attach crashes.
        Buggy attaching = new Buggy().attachFirst();
        attaching.iommu.errorOn = "mappings";
        assertEquals(new VfioContainerActor.GroupAttachFailed("c0", "g1", LOST),
                attaching.attach("g1", KIT.kit().createTestProbe().ref()));
        attaching.stops();
    }

    @Test
    void aSideThatCrashesWhileAGroupLeavesOrWhileReportingStillAnswers() {
        Buggy leaving = new Buggy().attachFirst();
        TestProbe<Object> g1 = KIT.kit().createTestProbe();
        leaving.attach("g1", g1.ref());
        TestProbe<VfioContainerActor.GroupGone> gone = KIT.kit().createTestProbe();
        leaving.container.tell(new VfioContainerActor.AwaitGroupGone(g1.ref(), gone.ref()));
        leaving.backend.errorOn = "detach";
        TestProbe<VfioContainerActor.DetachResult> detached = KIT.kit().createTestProbe();
        leaving.container.tell(new VfioContainerActor.DetachGroup("g1", detached.ref()));
        assertEquals(new VfioContainerActor.GroupGone("c0", g1.ref()), gone.receiveMessage());
        assertEquals(new VfioContainerActor.GroupDetached("c0", "g1", true), detached.receiveMessage());
        leaving.stops();

        Buggy reporting = new Buggy().attachFirst();
        reporting.iommu.errorOn = "mappings";
        TestProbe<VfioContainerActor.State> state = KIT.kit().createTestProbe();
        reporting.container.tell(new VfioContainerActor.GetState(state.ref()));
        VfioContainerActor.State reported = state.receiveMessage();
        assertEquals(List.of(), reported.mappings());
        assertEquals(java.util.Optional.empty(), reported.info());
        reporting.stops();
    }

    @Test
    void aSideThatCrashesWhileReleasingOrRestoringBlocksFailsTheRequest() {
        memory = HostMemory.anonymous("buggy-ram", 8 * PAGE);
        List<AddressRange> block = List.of(AddressRange.of(0, 4 * PAGE));
        for (String call : List.of("unmap", "map")) {
            Buggy buggy = new Buggy();
            TestProbe<VfioContainerActor.AttachResult> attached = KIT.kit().createTestProbe();
            buggy.container.tell(new VfioContainerActor.AttachGroup("g0", buggy.g0.ref(), attached.ref()));
            AddressSpaceActor.Subscribe subscribe = space.expectMessageClass(AddressSpaceActor.Subscribe.class);
            subscribe.replyTo().tell(new AddressSpaceActor.Subscribed("c0", 0));
            attached.receiveMessage();
            TestProbe<MemoryListener.Reply> replies = KIT.kit().createTestProbe();
            subscribe.listener().tell(new MemoryListener.Update(1, List.of(), FlatView.of(List.of(MemoryRegion.ram(
                    "ram", AddressRange.of(0, 8 * PAGE), memory, 0))).sections(), false, replies.ref()));
            assertEquals(new MemoryListener.Applied(1, "c0"), replies.receiveMessage());
            DiscardManager.PinOwner owner = pinOwner(buggy.container);
            TestProbe<DiscardManager.BlockReply> reply = KIT.kit().createTestProbe();
            if (call.equals("map")) {
                owner.port().tell(new DiscardManager.ReleaseBlocks(block, reply.ref()));
                assertEquals(new DiscardManager.BlocksDone("c0"), reply.receiveMessage());
            }
            buggy.iommu.errorOn = call;
            owner.port().tell(call.equals("map") ? new DiscardManager.RestoreBlocks(block, reply.ref())
                    : new DiscardManager.ReleaseBlocks(block, reply.ref()));
            assertEquals(new DiscardManager.BlocksFailed("c0", block, LOST), reply.receiveMessage(), call);
            buggy.stops();
        }
    }
}
