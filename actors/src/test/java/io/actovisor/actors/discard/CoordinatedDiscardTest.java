package io.actovisor.actors.discard;

import static io.actovisor.actors.testing.ActorTree.PAGE;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.actors.balloon.BalloonActor;
import io.actovisor.actors.balloon.BalloonSettings;
import io.actovisor.actors.memory.AddressSpaceActor;
import io.actovisor.actors.testing.ActorTree;
import io.actovisor.actors.testing.NativeTestKit;
import io.actovisor.actors.vfio.ContainerDmaActor;
import io.actovisor.actors.vfio.VfioContainerActor;
import io.actovisor.actors.vfio.VfioGroupActor;
import io.actovisor.devices.iommu.DmaMapping;
import io.actovisor.devices.iommu.DmaPermissions;
import io.actovisor.devices.iommu.Iommu;
import io.actovisor.devices.iommu.IommuException;
import io.actovisor.devices.iommu.IommuInfo;
import io.actovisor.devices.iommu.model.ModelIommu;
import io.actovisor.devices.iommu.pinned.PinnedIommu;
import io.actovisor.kernel.uring.IoUring;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.HostAddress;
import io.actovisor.memory.sys.ProcessResources;
import io.actovisor.memory.testing.NativeRequirement;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * Coordinated discard through the real actor tree: a block is discarded only after its container unmapped it, a
 * deflate maps it again before it is answered, and on {@code pinned} the device never sees the old page.
 */
class CoordinatedDiscardTest {
    /** Four pages per block, so a test balloons whole blocks with a handful of frames. */
    private static final long BLOCK = 4 * PAGE;
    @RegisterExtension
    static final NativeTestKit KIT = new NativeTestKit();

    /** A coordinated container on a watched model IOMMU with one attached coordinated group. */
    private static ActorTree coordinatedTree(boolean guestTellsHost) {
        ActorTree tree = new ActorTree(KIT.kit(), 32, BalloonSettings.DEFAULT, BLOCK);
        tree.container("c0", 65535, DiscardMode.COORDINATED);
        tree.group("g0", DiscardMode.COORDINATED);
        tree.commit(new AddressSpaceActor.AddRegion(tree.ram("ram", 0, 0, 32)));
        tree.discard.tell(new DiscardManager.SetGuestContract(guestTellsHost));
        assertEquals(new VfioGroupActor.Attached("g0", "c0", true), tree.attach("g0", "c0"));
        return tree;
    }

    @Test
    void aBlockIsDiscardedOnlyOnceItsContainerUnmappedItAndMappedAgainBeforeADeflateIsAnswered() {
        try (ActorTree tree = coordinatedTree(true)) {
            assertEquals(8, tree.containerState("c0").mappings().size(), "guest RAM mapped in 8 blocks");
            for (int page = 0; page < 32; page++) {
                tree.memory.writeLong(tree.memory.base().checkedAdd(page * PAGE), 1000 + page);
            }
            BalloonActor.InflateResult partial = tree.inflate(4, 5, 6);
            assertEquals(new BalloonActor.InflateResult(3, 0, 0, 0, List.of(), 3), partial, "held, not discarded");
            assertEquals(1004, tree.memory.readLong(tree.memory.base().checkedAdd(4 * PAGE)));
            assertEquals(3, tree.discardState().framesHeld());
            tree.assertInvariants("with frames held");

            BalloonActor.InflateResult complete = tree.inflate(7);
            assertEquals(4, complete.pagesDiscarded(), "the block is complete: all four pages go");
            assertEquals(List.of(AddressRange.of(BLOCK, BLOCK)), tree.containerState("c0").releasedBlocks());
            for (int page = 4; page < 8; page++) {
                assertEquals(0, tree.memory.readLong(tree.memory.base().checkedAdd(page * PAGE)), "page " + page);
            }
            DiscardState state = tree.discardState();
            assertEquals(1, state.blocksUnmapped());
            assertEquals(0, state.framesHeld());
            tree.assertInvariants("with a block discarded"); // includes: no discard touched a pinned page

            assertEquals(new BalloonActor.DeflateResult(1, List.of()), tree.deflate(5));
            assertEquals(List.of(), tree.containerState("c0").releasedBlocks(), "mapped again before the answer");
            assertEquals(3, tree.discardState().framesHeld());
            assertEquals(0, tree.discardState().blocksUnmapped());
            tree.assertInvariants("after the deflate");
        }
    }

    @Test
    void withoutMustTellHostACoordinatedGroupDisablesDiscardsAndSaysWhy() {
        try (ActorTree tree = coordinatedTree(false)) {
            BalloonActor.InflateResult result = tree.inflate(0, 1, 2, 3);
            assertEquals(4, result.pagesSkipped());
            DiscardState state = tree.discardState();
            assertEquals(List.of(new DiscardState.Fallback("vfio-group:g0", DiscardManager.NO_GUEST_CONTRACT)),
                    state.fallbacks());
            assertEquals(List.of(), tree.containerState("c0").releasedBlocks());
            tree.assertInvariants("inhibited by the missing contract");
        }
    }

    @Test
    void aResetInTheMiddleOfACoordinatedBalloonMapsEveryDiscardedBlockAgain() {
        try (ActorTree tree = coordinatedTree(true)) {
            tree.inflate(0, 1, 2, 3, 8, 9, 10, 11, 12);
            assertEquals(2, tree.containerState("c0").releasedBlocks().size());
            var probe = KIT.kit().createTestProbe(DiscardManager.ReclaimResult.class);
            tree.discard.tell(new DiscardManager.RestoreAll(probe.ref()));
            assertEquals(new DiscardManager.Reclaimed(2), probe.receiveMessage());
            assertEquals(List.of(), tree.containerState("c0").releasedBlocks());
            assertEquals(9, tree.discardState().framesHeld(), "the balloon still holds its frames");
            tree.assertInvariants("after the reset");
        }
    }

    @Test
    void onPinnedTheBlocksPinsAreGoneBeforeTheDiscardAndTheDeviceNeverSeesTheOldPage() {
        NativeRequirement.require("io_uring", IoUring.unavailabilityCause());
        long pinnedBefore = ProcessResources.statusKib("VmPin");
        try (ActorTree tree = new ActorTree(KIT.kit(), 32, BalloonSettings.DEFAULT, BLOCK)) {
            tree.container("c0", tree.pins.backend(PinnedIommu.BACKEND, PinnedIommu::open), DiscardMode.COORDINATED);
            tree.group("g0", DiscardMode.COORDINATED);
            tree.commit(new AddressSpaceActor.AddRegion(tree.ram("ram", 0, 0, 32)));
            tree.discard.tell(new DiscardManager.SetGuestContract(true));
            assertInstanceOf(VfioGroupActor.Attached.class, tree.attach("g0", "c0"));
            byte[] a = new byte[(int) PAGE];
            Arrays.fill(a, (byte) 'A');
            for (int page = 0; page < 32; page++) {
                tree.memory.write(tree.memory.base().checkedAdd(page * PAGE), a);
            }
            assertEquals(pinnedBefore + 32 * PAGE / 1024, ProcessResources.statusKib("VmPin"));
            assertEquals(4, tree.inflate(8, 9, 10, 11).pagesDiscarded());
            assertEquals(pinnedBefore + 28 * PAGE / 1024, ProcessResources.statusKib("VmPin"),
                    "the block's pins are gone");
            tree.assertInvariants("after a coordinated discard on pinned");
            // The device cannot reach the discarded block at all: an error, never the old 'A'.
            ContainerDmaActor.ReadResult dma = tree.ask(ContainerDmaActor.ReadResult.class,
                    r -> new VfioContainerActor.Dma(new ContainerDmaActor.DmaRead(2 * BLOCK, 16, r)),
                    tree.containers.get("c0"));
            assertInstanceOf(ContainerDmaActor.DmaFailed.class, dma);
            assertEquals(new BalloonActor.DeflateResult(4, List.of()), tree.deflate(8, 9, 10, 11));
            assertEquals(pinnedBefore + 32 * PAGE / 1024, ProcessResources.statusKib("VmPin"), "pinned again");
            byte[] b = new byte[16];
            Arrays.fill(b, (byte) 'B');
            tree.memory.write(tree.memory.base().checkedAdd(2 * BLOCK), b);
            ContainerDmaActor.DataRead read = (ContainerDmaActor.DataRead) tree.ask(ContainerDmaActor.ReadResult.class,
                    r -> new VfioContainerActor.Dma(new ContainerDmaActor.DmaRead(2 * BLOCK, 16, r)),
                    tree.containers.get("c0"));
            assertArrayEquals(b, read.data(), "device and CPU read the same fresh page");
            tree.assertInvariants("after the remap on pinned");
        }
        assertEquals(pinnedBefore, ProcessResources.statusKib("VmPin"), "nothing left pinned");
    }

    @Test
    void aContainerThatCannotUnmapKeepsTheBlockHeldAndTheVmRunning() {
        try (ActorTree tree = new ActorTree(KIT.kit(), 32, BalloonSettings.DEFAULT, BLOCK)) {
            boolean[] failUnmaps = {false};
            tree.container("c0", tree.pins.backend(ModelIommu.BACKEND, () -> new FailingUnmaps(ModelIommu.create(),
                    failUnmaps)), DiscardMode.COORDINATED);
            tree.group("g0", DiscardMode.COORDINATED);
            tree.commit(new AddressSpaceActor.AddRegion(tree.ram("ram", 0, 0, 32)));
            tree.discard.tell(new DiscardManager.SetGuestContract(true));
            assertInstanceOf(VfioGroupActor.Attached.class, tree.attach("g0", "c0"));
            failUnmaps[0] = true;
            tree.memory.writeLong(tree.memory.base().checkedAdd(4 * PAGE), 77);
            BalloonActor.InflateResult result = tree.inflate(4, 5, 6, 7);
            assertEquals(0, result.pagesDiscarded());
            assertEquals(4, result.pagesHeld());
            assertEquals(77, tree.memory.readLong(tree.memory.base().checkedAdd(4 * PAGE)));
            DiscardState state = tree.discardState();
            assertEquals(1, state.blockReleaseFailures());
            assertEquals(4, state.framesHeld());
            failUnmaps[0] = false;
            tree.assertInvariants("after a failed unmap");
            // The next inflate tries the held block again.
            assertEquals(4, tree.inflate(20).pagesDiscarded());
            assertEquals(1, tree.discardState().blocksUnmapped());
        }
    }

    /** An IOMMU whose unmaps fail with an errno while {@code fail[0]} is set (a kernel that refuses the unmap). */
    private record FailingUnmaps(Iommu inner, boolean[] fail) implements Iommu {
        @Override
        public String backend() {
            return inner.backend();
        }

        @Override
        public IommuInfo info() {
            return inner.info();
        }

        @Override
        public void map(AddressRange iova, HostAddress host, DmaPermissions permissions) {
            inner.map(iova, host, permissions);
        }

        @Override
        public List<DmaMapping> unmap(AddressRange iova) {
            if (fail[0]) {
                throw new IommuException(IommuException.Kind.PIN_FAILED, iova, "ioctl(VFIO_IOMMU_UNMAP_DMA) failed: "
                        + "EBUSY (16)");
            }
            return inner.unmap(iova);
        }

        @Override
        public List<DmaMapping> mappings() {
            return inner.mappings();
        }

        @Override
        public long pinnedBytes() {
            return inner.pinnedBytes();
        }

        @Override
        public void close() {
            inner.close();
        }
    }
}
