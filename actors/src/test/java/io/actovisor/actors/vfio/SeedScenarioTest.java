package io.actovisor.actors.vfio;

import static io.actovisor.actors.testing.ActorTree.PAGE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.actors.balloon.BalloonActor;
import io.actovisor.actors.balloon.BalloonSettings;
import io.actovisor.actors.discard.DiscardMode;
import io.actovisor.actors.events.ActovisorEvent;
import io.actovisor.actors.memory.AddressSpaceActor;
import io.actovisor.actors.testing.ActorTree;
import io.actovisor.actors.testing.NativeTestKit;
import io.actovisor.devices.iommu.IommuInfo;
import io.actovisor.devices.iommu.model.ModelIommu;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.HostAddress;
import java.util.List;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.eventstream.EventStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * The seed's scenario at host level: while a VFIO group is attached the balloon must not discard guest RAM; once
 * it detaches, inflating really gives the memory back.
 */
class SeedScenarioTest {
    @RegisterExtension
    static final NativeTestKit KIT = new NativeTestKit();

    @Test
    void attachedGroupInhibitsTheBalloonAndDetachReleasesIt() {
        TestProbe<ActovisorEvent.InhibitChanged> inhibits = KIT.kit().createTestProbe();
        TestProbe<ActovisorEvent.DiscardSkipped> skips = KIT.kit().createTestProbe();
        KIT.kit().system().eventStream().tell(new EventStream.Subscribe<>(ActovisorEvent.InhibitChanged.class,
                inhibits.ref()));
        KIT.kit().system().eventStream().tell(new EventStream.Subscribe<>(ActovisorEvent.DiscardSkipped.class,
                skips.ref()));
        try (ActorTree tree = new ActorTree(KIT.kit(), 64, BalloonSettings.DEFAULT)) {
            tree.container("c0", 65535);
            tree.group("g0", false);
            assertInstanceOf(AddressSpaceActor.Committed.class,
                    tree.commit(new AddressSpaceActor.AddRegion(tree.ram("ram", 0, 0, 64))));

            VfioGroupActor.AttachResult attached = tree.attach("g0", "c0");
            assertEquals(new VfioGroupActor.Attached("g0", "c0", true), attached);
            VfioContainerActor.State container = tree.containerState("c0");
            assertEquals(List.of(AddressRange.of(0, 64 * PAGE)),
                    container.mappings().stream().map(m -> m.iova()).toList(), "guest RAM mapped at IOVA = GPA");
            assertEquals(64 * PAGE, container.pinnedBytes());
            assertEquals(1, tree.balloonStatus().inhibitors());
            assertEquals(1, inhibits.expectMessageClass(ActovisorEvent.InhibitChanged.class).count());

            HostAddress page5 = tree.memory.base().checkedAdd(5 * PAGE);
            tree.memory.writeLong(page5, 0x5eed_5eedL);
            BalloonActor.InflateResult inflate = tree.inflate(5);
            assertEquals(new BalloonActor.InflateResult(1, 0, 1, 0, List.of()), inflate);
            assertEquals(0x5eed_5eedL, tree.memory.readLong(page5), "an inhibited inflate must not discard");
            ActovisorEvent.DiscardSkipped skipped = skips.expectMessageClass(ActovisorEvent.DiscardSkipped.class);
            assertEquals(List.of(AddressRange.of(5 * PAGE, PAGE)), skipped.ranges());
            assertEquals(List.of("vfio-group:g0"), skipped.holders());
            tree.assertInvariants("while attached");

            assertEquals(new VfioGroupActor.Detached("g0", "c0"), tree.detach("g0"));
            assertEquals(0, inhibits.expectMessageClass(ActovisorEvent.InhibitChanged.class).count());
            assertEquals(0, tree.balloonStatus().inhibitors());
            assertEquals(List.of(), tree.containerState("c0").mappings());
            assertEquals(0, tree.containerState("c0").pinnedBytes());

            HostAddress page6 = tree.memory.base().checkedAdd(6 * PAGE);
            tree.memory.writeLong(page6, 0x1234L);
            BalloonActor.InflateResult real = tree.inflate(6);
            assertEquals(1, real.pagesDiscarded());
            assertEquals(0L, tree.memory.readLong(page6), "a discarded private page reads back as zeros");
            BalloonActor.BalloonStatus status = tree.balloonStatus();
            assertEquals(2 * PAGE, status.actualBytes());
            assertEquals(1, status.discards());
            assertEquals(1, status.skippedDiscards());
            assertTrue(status.holders().isEmpty());
            tree.assertInvariants("after detach");
        }
    }

    @Test
    void contiguousFramesAreCoalescedIntoOneDiscard() {
        try (ActorTree tree = new ActorTree(KIT.kit(), 64, BalloonSettings.DEFAULT)) {
            tree.commit(new AddressSpaceActor.AddRegion(tree.ram("ram", 0, 0, 64)));
            BalloonActor.InflateResult result = tree.inflate(10, 11, 12, 13, 20, 21, 40, 12);
            assertEquals(7, result.pagesAccepted());
            assertEquals(3, result.discards(), "three runs: 10-13, 20-21, 40");
            assertEquals(List.of(AddressRange.of(tree.memory.base().value() + 10 * PAGE, 4 * PAGE),
                    AddressRange.of(tree.memory.base().value() + 20 * PAGE, 2 * PAGE),
                    AddressRange.of(tree.memory.base().value() + 40 * PAGE, PAGE)), tree.pins.discards());
            assertEquals(new BalloonActor.DeflateResult(2, List.of(63L)), tree.deflate(10, 11, 63));
            assertEquals(5 * PAGE, tree.balloonStatus().actualBytes());
        }
    }

    @Test
    void framesOutsideRamAreRejectedAndNamed() {
        try (ActorTree tree = new ActorTree(KIT.kit(), 16, BalloonSettings.DEFAULT)) {
            tree.commit(new AddressSpaceActor.AddRegion(tree.ram("ram", 0, 0, 16)));
            BalloonActor.InflateResult result = tree.inflate(3, 16, -1, 1L << 40);
            assertEquals(1, result.pagesAccepted());
            assertEquals(List.of(16L, -1L, 1L << 40), result.rejected());
        }
    }

    @Test
    void onDemandGroupsDoNotInhibit() {
        try (ActorTree tree = new ActorTree(KIT.kit(), 16, BalloonSettings.DEFAULT)) {
            tree.container("c0", 65535, DiscardMode.ON_DEMAND);
            tree.group("mdev", true);
            tree.commit(new AddressSpaceActor.AddRegion(tree.ram("ram", 0, 0, 16)));
            assertEquals(new VfioGroupActor.Attached("mdev", "c0", false), tree.attach("mdev", "c0"));
            assertEquals(0, tree.balloonStatus().inhibitors());
            assertEquals(1, tree.containerState("c0").mappings().size());
            tree.assertInvariants("with a compatible group");
        }
    }

    @Test
    void aGroupWhoseModeDisagreesWithItsContainersIsRefusedNamingBoth() {
        try (ActorTree tree = new ActorTree(KIT.kit(), 16, BalloonSettings.DEFAULT)) {
            tree.container("c0", 65535);
            tree.group("mdev", true);
            tree.commit(new AddressSpaceActor.AddRegion(tree.ram("ram", 0, 0, 16)));
            VfioGroupActor.AttachFailed failed = (VfioGroupActor.AttachFailed) tree.attach("mdev", "c0");
            assertTrue(failed.reason().contains("declares discard = on-demand")
                    && failed.reason().contains("has discard = inhibit"), failed.reason());
            assertEquals(0, tree.balloonStatus().inhibitors());
            assertEquals(List.of(), tree.containerState("c0").mappings(), "nothing was pinned");
            tree.assertInvariants("after a refused attach");
        }
    }

    @Test
    void aCoordinatedBlockSmallerThanTheIommuPageIsRefusedWhenTheContainerOpens() {
        long block = 16 * 1024;
        try (ActorTree tree = new ActorTree(KIT.kit(), 16, BalloonSettings.DEFAULT, block)) {
            // An IOMMU whose smallest page is 64 KiB (as on some ARM hosts): 16 KiB blocks cannot be unmapped alone.
            IommuBackend coarse = IommuBackend.shared(ModelIommu.BACKEND, () -> ModelIommu.create(new IommuInfo(
                    1L << 16, 65535, List.of(ModelIommu.DEFAULT_IOVA_RANGE))));
            tree.container("c0", coarse, DiscardMode.COORDINATED);
            tree.group("g0", DiscardMode.COORDINATED);
            tree.commit(new AddressSpaceActor.AddRegion(tree.ram("ram", 0, 0, 16)));
            VfioGroupActor.AttachFailed failed = (VfioGroupActor.AttachFailed) tree.attach("g0", "c0");
            assertTrue(failed.reason().contains("discard-block-size 16384")
                    && failed.reason().contains("minimum page size 65536"), failed.reason());
            assertEquals(0, tree.discardState().coordinatedHolders(), "the registration was released");
            assertEquals(List.of(), tree.containerState("c0").mappings());
        }
    }
}
