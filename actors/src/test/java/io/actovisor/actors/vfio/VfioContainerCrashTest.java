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
}
