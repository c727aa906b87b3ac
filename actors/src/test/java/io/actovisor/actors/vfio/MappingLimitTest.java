package io.actovisor.actors.vfio;

import static io.actovisor.actors.testing.ActorTree.PAGE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.actors.balloon.BalloonSettings;
import io.actovisor.actors.discard.DiscardMode;
import io.actovisor.actors.memory.AddressSpaceActor;
import io.actovisor.actors.testing.ActorTree;
import io.actovisor.actors.testing.NativeTestKit;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * A coordinated container maps one IOMMU mapping per block, so the IOMMU's mapping limit (type1's
 * {@code dma_entry_limit}) counts blocks: guest memory that needs more is refused at attach, naming both numbers,
 * before anything is pinned. The nested type1 guest shows the same against the kernel's limit.
 */
class MappingLimitTest {
    private static final long BLOCK = 4 * PAGE;
    @RegisterExtension
    static final NativeTestKit KIT = new NativeTestKit();

    private static ActorTree tree(int maxMappings, DiscardMode mode) {
        ActorTree tree = new ActorTree(KIT.kit(), 64, BalloonSettings.DEFAULT, BLOCK);
        tree.container("c0", maxMappings, mode);
        tree.group("g0", mode);
        tree.commit(new AddressSpaceActor.AddRegion(tree.ram("ram", 0, 0, 32)));
        return tree;
    }

    @Test
    void guestMemoryNeedingMoreBlocksThanTheLimitIsRefusedAtAttachNamingBothNumbers() {
        try (ActorTree tree = tree(7, DiscardMode.COORDINATED)) {
            VfioGroupActor.AttachResult result = tree.attach("g0", "c0");
            VfioGroupActor.AttachFailed failed = assertInstanceOf(VfioGroupActor.AttachFailed.class, result);
            assertTrue(failed.reason().contains("guest memory needs 8 IOMMU mappings (one per discard-block-size "
                    + "block of 16384 bytes) but the model IOMMU accepts at most 7"), failed.reason());
            VfioContainerActor.State state = tree.containerState("c0");
            assertEquals(List.of(), state.groups());
            assertEquals(List.of(), state.mappings(), "nothing was pinned");
            assertEquals(0, tree.discardState().coordinatedHolders(), "the group's registration was released");
            tree.assertInvariants("after the refused attach");
        }
    }

    @Test
    void guestMemoryWithExactlyAsManyBlocksAsTheLimitAttachesAndAGrowingCommitIsRefused() {
        try (ActorTree tree = tree(8, DiscardMode.COORDINATED)) {
            assertInstanceOf(VfioGroupActor.Attached.class, tree.attach("g0", "c0"));
            assertEquals(8, tree.containerState("c0").mappings().size());
            AddressSpaceActor.CommitResult grown = tree.commit(new AddressSpaceActor.AddRegion(
                    tree.ram("more", 64, 32, 4)));
            AddressSpaceActor.CommitFailed failed = assertInstanceOf(AddressSpaceActor.CommitFailed.class, grown);
            assertTrue(failed.reason().contains("needs 9 IOMMU mappings"), failed.reason());
            assertEquals(8, tree.containerState("c0").mappings().size(), "the refused commit left the mappings");
            tree.assertInvariants("after the refused commit");
        }
    }

    @Test
    void anInhibitingContainerMapsASectionAsOneMappingAndIsNotLimitedByBlocks() {
        try (ActorTree tree = tree(1, DiscardMode.INHIBIT)) {
            assertInstanceOf(VfioGroupActor.Attached.class, tree.attach("g0", "c0"));
            assertEquals(1, tree.containerState("c0").mappings().size());
        }
    }
}
