package io.actovisor.actors.vfio;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.actovisor.actors.discard.DiscardManager;
import io.actovisor.actors.discard.DiscardMode;
import io.actovisor.actors.memory.AddressSpaceActor;
import io.actovisor.actors.memory.MemoryListener;
import io.actovisor.actors.testing.NativeTestKit;
import io.actovisor.devices.iommu.DmaMapping;
import io.actovisor.devices.iommu.DmaPermissions;
import io.actovisor.devices.iommu.model.ModelIommu;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.FlatView;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.MemoryRegion;
import io.actovisor.memory.Section;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * A coordinated container as the discard manager's pin owner, against a probe address space and an IOMMU that
 * refuses on cue: a block it cannot unmap is named in the failure and stays mapped; a restored block is populated
 * (RAM, not ROM) before it is mapped again, and one that cannot be populated or mapped stays released; a block that
 * was never released is not mapped twice; closing the IOMMU forgets the released blocks; and the container tells a
 * manager waiting for a holder's pins when that holder leaves.
 */
class VfioContainerBlocksTest {
    private static final long PAGE = 4096;
    private static final long BLOCK = 4 * PAGE;
    @RegisterExtension
    static final NativeTestKit KIT = new NativeTestKit();
    private HostMemory memory;

    @AfterEach
    void free() {
        if (memory != null) {
            memory.close();
        }
    }

    private final class Blocks {
        final Set<Long> refuseMap = ConcurrentHashMap.newKeySet();
        final Set<Long> refuseUnmap = ConcurrentHashMap.newKeySet();
        final TestProbe<AddressSpaceActor.Command> space = KIT.kit().createTestProbe();
        final TestProbe<MemoryListener.Reply> replies = KIT.kit().createTestProbe();
        final TestProbe<Object> group = KIT.kit().createTestProbe();
        final ActorRef<VfioContainerActor.Command> container;
        final DiscardManager.PinOwner owner;
        ActorRef<MemoryListener.Update> listener;
        private long commit = 1;

        Blocks(long memorySize) {
            memory = HostMemory.anonymous("blocks-ram", memorySize);
            IommuBackend backend = IommuBackend.shared(ModelIommu.BACKEND, () -> new ContainerDmaOrdersTest.CueIommu(
                    ModelIommu.BACKEND, 65535, refuseMap, refuseUnmap));
            container = KIT.kit().spawn(VfioContainerActor.create("c0", space.ref(), backend,
                    DiscardMode.COORDINATED, BLOCK), "blocks-" + System.nanoTime(), VfioContainerActor.DISPATCHER);
            attach();
            TestProbe<VfioContainerActor.Description> described = KIT.kit().createTestProbe();
            container.tell(new VfioContainerActor.Describe(described.ref()));
            owner = described.receiveMessage().pinOwner();
        }

        void attach() {
            TestProbe<VfioContainerActor.AttachResult> attached = KIT.kit().createTestProbe();
            container.tell(new VfioContainerActor.AttachGroup("g0", group.ref(), attached.ref()));
            AddressSpaceActor.Subscribe subscribe = space.expectMessageClass(AddressSpaceActor.Subscribe.class);
            listener = subscribe.listener();
            subscribe.replyTo().tell(new AddressSpaceActor.Subscribed("c0", 0));
            assertEquals(new VfioContainerActor.GroupAttached("c0", "g0", 0), attached.receiveMessage());
        }

        MemoryListener.Reply update(List<Section> del, List<Section> add) {
            long id = commit++;
            listener.tell(new MemoryListener.Update(id, del, add, false, replies.ref()));
            return replies.receiveMessage();
        }

        DiscardManager.BlockReply release(AddressRange... blocks) {
            TestProbe<DiscardManager.BlockReply> reply = KIT.kit().createTestProbe();
            owner.port().tell(new DiscardManager.ReleaseBlocks(List.of(blocks), reply.ref()));
            return reply.receiveMessage();
        }

        DiscardManager.BlockReply restore(AddressRange... blocks) {
            TestProbe<DiscardManager.BlockReply> reply = KIT.kit().createTestProbe();
            owner.port().tell(new DiscardManager.RestoreBlocks(List.of(blocks), reply.ref()));
            return reply.receiveMessage();
        }

        VfioContainerActor.State state() {
            TestProbe<VfioContainerActor.State> probe = KIT.kit().createTestProbe();
            container.tell(new VfioContainerActor.GetState(probe.ref()));
            return probe.receiveMessage();
        }
    }

    private static AddressRange block(long index) {
        return AddressRange.of(index * BLOCK, BLOCK);
    }

    private DmaMapping mapping(long index, DmaPermissions permissions) {
        return new DmaMapping(block(index), memory.base().checkedAdd(index * BLOCK), permissions);
    }

    /** RAM over blocks 0 and 1, ROM over block 2, each at the same offset in host memory as in the guest. */
    private List<Section> ramAndRom() {
        return FlatView.of(List.of(MemoryRegion.ram("ram", AddressRange.of(0, 2 * BLOCK), memory, 0),
                MemoryRegion.rom("rom", AddressRange.of(2 * BLOCK, BLOCK), memory, 2 * BLOCK))).sections();
    }

    private long resident(long index) {
        return memory.residentBytes(AddressRange.of(memory.base().value() + index * BLOCK, BLOCK));
    }

    @Test
    void aRestoredRamBlockIsPopulatedBeforeItIsMappedAgainAndARomBlockIsNot() {
        Blocks b = new Blocks(4 * BLOCK);
        b.update(List.of(), ramAndRom());
        assertEquals(new DiscardManager.BlocksDone("c0"), b.release(block(0), block(2)));
        assertEquals(List.of(block(0), block(2)), b.state().releasedBlocks());
        assertEquals(0, resident(0), "the model IOMMU touches no page");

        assertEquals(new DiscardManager.BlocksDone("c0"), b.restore(block(0), block(2)));
        assertEquals(BLOCK, resident(0), "the RAM block is faulted in before the IOMMU maps it again");
        assertEquals(0, resident(2), "ROM is mapped read-only and not written to fault it in");
        assertEquals(List.of(mapping(0, DmaPermissions.READ_WRITE), mapping(1, DmaPermissions.READ_WRITE),
                mapping(2, DmaPermissions.READ)), b.state().mappings());
        assertEquals(List.of(), b.state().releasedBlocks());
    }

    @Test
    void aBlockTheIommuCannotUnmapStaysMappedAndIsNamedInTheFailure() {
        Blocks b = new Blocks(4 * BLOCK);
        b.update(List.of(), ramAndRom());
        b.refuseUnmap.add(BLOCK);
        assertEquals(new DiscardManager.BlocksFailed("c0", List.of(block(1)), "unmap refused at " + BLOCK),
                b.release(block(0), block(1)));
        assertEquals(List.of(block(0)), b.state().releasedBlocks());
        assertEquals(List.of(mapping(1, DmaPermissions.READ_WRITE), mapping(2, DmaPermissions.READ)),
                b.state().mappings());
    }

    @Test
    void aBlockThatCannotBeMappedAgainOrPopulatedStaysReleasedAndTheOthersAreRestored() {
        Blocks b = new Blocks(4 * BLOCK);
        // Block 3 is RAM in a second host memory that will be gone when it is restored.
        HostMemory other = HostMemory.anonymous("blocks-other", BLOCK);
        List<Section> view = FlatView.of(List.of(MemoryRegion.ram("ram", AddressRange.of(0, 2 * BLOCK), memory, 0),
                MemoryRegion.rom("rom", AddressRange.of(2 * BLOCK, BLOCK), memory, 2 * BLOCK),
                MemoryRegion.ram("other", AddressRange.of(3 * BLOCK, BLOCK), other, 0))).sections();
        b.update(List.of(), view);
        assertEquals(new DiscardManager.BlocksDone("c0"), b.release(block(0), block(1), block(3)));
        other.close();
        b.refuseMap.add(BLOCK);

        assertEquals(new DiscardManager.BlocksFailed("c0", List.of(block(3), block(1)),
                "host memory blocks-other is closed; map refused at " + BLOCK),
                b.restore(block(0), block(1), block(3)));
        assertEquals(List.of(block(1), block(3)), b.state().releasedBlocks());
        assertEquals(List.of(mapping(0, DmaPermissions.READ_WRITE), mapping(2, DmaPermissions.READ)),
                b.state().mappings());

        // A restore of blocks that are all mapped already is answered without an order to the IOMMU.
        assertEquals(new DiscardManager.BlocksDone("c0"), b.restore(block(0), block(2)));
        // Once the IOMMU maps it, the block is restored; a block that was never released is not mapped twice.
        b.refuseMap.clear();
        assertEquals(new DiscardManager.BlocksDone("c0"), b.restore(block(1), block(2)));
        assertEquals(List.of(block(3)), b.state().releasedBlocks());
        assertEquals(List.of(mapping(0, DmaPermissions.READ_WRITE), mapping(1, DmaPermissions.READ_WRITE),
                mapping(2, DmaPermissions.READ)), b.state().mappings());
    }

    @Test
    void closingTheIommuForgetsReleasedBlocksAndAClosedContainerHasNothingToReleaseOrRestore() {
        Blocks b = new Blocks(4 * BLOCK);
        List<Section> view = ramAndRom();
        b.update(List.of(), view);
        assertEquals(new DiscardManager.BlocksDone("c0"), b.release(block(1)));

        TestProbe<VfioContainerActor.DetachResult> detached = KIT.kit().createTestProbe();
        b.container.tell(new VfioContainerActor.DetachGroup("g0", detached.ref()));
        assertEquals(new VfioContainerActor.GroupDetached("c0", "g0", true), detached.receiveMessage());
        b.space.expectMessageClass(AddressSpaceActor.Unsubscribe.class);
        assertEquals(List.of(), b.state().releasedBlocks());
        assertEquals(new DiscardManager.BlocksDone("c0"), b.release(block(0)));
        assertEquals(new DiscardManager.BlocksDone("c0"), b.restore(block(1)));
        assertEquals(List.of(), b.state().releasedBlocks());

        // Attached again, the container maps the whole view, the block released before the close included.
        b.attach();
        assertEquals(new MemoryListener.Applied(2, "c0"), b.update(List.of(), view));
        assertEquals(List.of(mapping(0, DmaPermissions.READ_WRITE), mapping(1, DmaPermissions.READ_WRITE),
                mapping(2, DmaPermissions.READ)), b.state().mappings());
    }

    @Test
    void aViewMirroredBeforeTheIommuClosedPlaysNoPartInRestoringBlocksAfterItOpensAgain() {
        Blocks b = new Blocks(4 * BLOCK);
        b.update(List.of(), ramAndRom());
        TestProbe<VfioContainerActor.DetachResult> detached = KIT.kit().createTestProbe();
        b.container.tell(new VfioContainerActor.DetachGroup("g0", detached.ref()));
        detached.receiveMessage();
        b.space.expectMessageClass(AddressSpaceActor.Unsubscribe.class);

        // The new view starts RAM one page into block 1: the old section at block 1's base must not come back.
        b.attach();
        List<Section> view = FlatView.of(List.of(MemoryRegion.ram("ram", AddressRange.of(BLOCK + PAGE,
                BLOCK - PAGE), memory, BLOCK + PAGE))).sections();
        assertEquals(new MemoryListener.Applied(2, "c0"), b.update(List.of(), view));
        DmaMapping ram = new DmaMapping(AddressRange.of(BLOCK + PAGE, BLOCK - PAGE),
                memory.base().checkedAdd(BLOCK + PAGE), DmaPermissions.READ_WRITE);
        assertEquals(List.of(ram), b.state().mappings());
        assertEquals(new DiscardManager.BlocksDone("c0"), b.release(block(1)));
        assertEquals(List.of(), b.state().mappings());
        assertEquals(new DiscardManager.BlocksDone("c0"), b.restore(block(1)));
        assertEquals(List.of(ram), b.state().mappings());
    }

    @Test
    void aManagerWaitingForAHoldersPinsHearsWhenTheHolderLeavesAndAtOnceForAStranger() {
        Blocks b = new Blocks(4 * BLOCK);
        TestProbe<DiscardManager.PinsGone> gone = KIT.kit().createTestProbe();
        TestProbe<Object> stranger = KIT.kit().createTestProbe();
        b.owner.port().tell(new DiscardManager.AwaitPinsGone(stranger.ref(), gone.ref()));
        assertEquals(new DiscardManager.PinsGone("c0", stranger.ref()), gone.receiveMessage());

        b.owner.port().tell(new DiscardManager.AwaitPinsGone(b.group.ref(), gone.ref()));
        TestProbe<VfioContainerActor.GroupGone> groupGone = KIT.kit().createTestProbe();
        b.container.tell(new VfioContainerActor.AwaitGroupGone(b.group.ref(), groupGone.ref()));
        b.state(); // both requests are in
        gone.expectNoMessage(java.time.Duration.ofMillis(100));
        groupGone.expectNoMessage(java.time.Duration.ofMillis(1));

        TestProbe<VfioContainerActor.DetachResult> detached = KIT.kit().createTestProbe();
        b.container.tell(new VfioContainerActor.DetachGroup("g0", detached.ref()));
        assertEquals(new DiscardManager.PinsGone("c0", b.group.ref()), gone.receiveMessage());
        assertEquals(new VfioContainerActor.GroupGone("c0", b.group.ref()), groupGone.receiveMessage());
        assertEquals(new VfioContainerActor.GroupDetached("c0", "g0", true), detached.receiveMessage());
    }
}
