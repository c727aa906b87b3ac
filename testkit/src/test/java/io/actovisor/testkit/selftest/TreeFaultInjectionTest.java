package io.actovisor.testkit.selftest;

import static io.actovisor.testkit.ActorTree.PAGE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.actors.balloon.BalloonActor;
import io.actovisor.actors.balloon.BalloonSettings;
import io.actovisor.actors.discard.DiscardMode;
import io.actovisor.actors.memory.AddressSpaceActor;
import io.actovisor.actors.memory.MemoryListener;
import io.actovisor.actors.vfio.VfioContainerActor;
import io.actovisor.actors.vfio.VfioGroupActor;
import io.actovisor.devices.iommu.model.ModelIommu;
import io.actovisor.memory.HostAddress;
import io.actovisor.testkit.ActorTree;
import io.actovisor.testkit.ActovisorTest;
import io.actovisor.testkit.Faults;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The project's own fault injection on a VM's actor tree (moved here from the actors module onto the testkit):
 * crashes and refusals at the worst moments; after each, invariants 1, 2, 3 and 5 hold on actor state and on host
 * memory contents.
 */
@ActovisorTest
class TreeFaultInjectionTest {
    private final ActorTestKit kit;

    TreeFaultInjectionTest(ActorTestKit kit) {
        this.kit = kit;
    }

    /**
     * A group crashes after its container described itself, after its registration with the discard manager (before
     * the container answers the join), or after the container answered.
     */
    @ParameterizedTest
    @ValueSource(strings = {"Described", "RegistrationReplied", "ContainerAttachReplied"})
    void aGroupCrashingMidAttachLeavesNoInhibitAndNoPins(String crashPoint) {
        try (ActorTree tree = new ActorTree(kit, 32, BalloonSettings.DEFAULT)) {
            tree.container("c0", 65535);
            tree.commit(new AddressSpaceActor.AddRegion(tree.ram("ram", 0, 0, 32)));
            ActorRef<VfioGroupActor.Command> group = tree.group("g0", false, Faults.crashOn(
                    VfioGroupActor.Command.class, crashPoint,
                    VfioGroupActor.create("g0", DiscardMode.INHIBIT, tree.discard)));
            TestProbe<VfioGroupActor.AttachResult> reply = kit.createTestProbe();
            group.tell(new VfioGroupActor.Attach(tree.containers.get("c0"), "c0", reply.ref()));
            reply.expectNoMessage(Duration.ofMillis(100));
            kit.createTestProbe().expectTerminated(group, Duration.ofSeconds(5));
            tree.groups.remove("g0");
            tree.compatible.remove("g0");
            tree.modes.remove("g0");
            tree.eventually(() -> {
                assertEquals(0, tree.balloonStatus().inhibitors());
                assertEquals(List.of(), tree.containerState("c0").groups());
            });
            tree.assertInvariants("after a crash at " + crashPoint);
            HostAddress page = tree.memory.base().checkedAdd(3 * PAGE);
            tree.memory.writeLong(page, 77);
            assertEquals(1, tree.inflate(3).pagesDiscarded(), "nothing pins the memory any more");
            assertEquals(0, tree.memory.readLong(page));
        }
    }

    @Test
    void aContainerStoppingWithGroupsAttachedUnpinsAndTheGroupsRelease() {
        try (ActorTree tree = new ActorTree(kit, 32, BalloonSettings.DEFAULT)) {
            tree.container("c0", 65535);
            tree.commit(new AddressSpaceActor.AddRegion(tree.ram("ram", 0, 0, 32)));
            tree.group("g0", false);
            tree.group("g1", false);
            assertInstanceOf(VfioGroupActor.Attached.class, tree.attach("g0", "c0"));
            assertInstanceOf(VfioGroupActor.Attached.class, tree.attach("g1", "c0"));
            assertEquals(2, tree.balloonStatus().inhibitors());
            assertEquals(32 * PAGE, tree.pins.pinnedBytes());
            tree.stopContainer("c0");
            tree.eventually(() -> assertEquals(0, tree.balloonStatus().inhibitors()));
            assertEquals(0, tree.pins.pinnedBytes(), "the container's PostStop closed its IOMMU");
            assertTrue(tree.groupState("g0").container().isEmpty());
            tree.assertInvariants("after the container stopped");
            assertEquals(List.of("balloon:" + tree.balloonStatus().name()), tree.view().listeners(),
                    "the stopped container is no longer a listener");
        }
    }

    /**
     * The container crashes on the group's DetachGroup (testkit seed attach-detach/groups=2#4): the detach is still
     * answered, the registration released, and nothing stays pinned (the container's PostStop closed its IOMMU).
     */
    @Test
    void aContainerCrashingOnDetachGroupStillAnswersTheDetach() {
        try (ActorTree tree = new ActorTree(kit, 32, BalloonSettings.DEFAULT)) {
            ActorRef<VfioContainerActor.Command> container = kit.spawn(Faults.crashOn(
                    VfioContainerActor.Command.class, "DetachGroup", VfioContainerActor.create("crashing", tree.space,
                            tree.pins.backend(ModelIommu.BACKEND, () -> ModelIommu.create(65535)))),
                    "crashing-on-detach", VfioContainerActor.DISPATCHER);
            tree.commit(new AddressSpaceActor.AddRegion(tree.ram("ram", 0, 0, 32)));
            ActorRef<VfioGroupActor.Command> group = tree.group("g0", false);
            TestProbe<VfioGroupActor.AttachResult> attached = kit.createTestProbe();
            group.tell(new VfioGroupActor.Attach(container, "crashing", attached.ref()));
            attached.expectMessageClass(VfioGroupActor.Attached.class, Duration.ofSeconds(10));
            assertEquals(1, tree.discardState().uncoordinatedHolders());
            assertEquals(32 * PAGE, tree.pins.pinnedBytes());

            TestProbe<VfioGroupActor.DetachResult> detached = kit.createTestProbe();
            group.tell(new VfioGroupActor.Detach(detached.ref()));
            assertEquals(new VfioGroupActor.Detached("g0", "crashing"), detached.expectMessageClass(
                    VfioGroupActor.Detached.class, Duration.ofSeconds(10)));
            kit.createTestProbe().expectTerminated(container, Duration.ofSeconds(5));
            assertEquals(0, tree.discardState().uncoordinatedHolders(), "the registration was released");
            assertEquals(0, tree.pins.pinnedBytes(), "the crashed container's PostStop closed its IOMMU");
            assertTrue(tree.groupState("g0").container().isEmpty());
            assertInstanceOf(VfioGroupActor.DetachFailed.class, tree.detach("g0"), "the group is idle again");
            tree.assertInvariants("after the container crashed during a detach");
        }
    }

    @Test
    void anIommuRefusingAMapMidCommitFailsTheCommitEverywhere() {
        try (ActorTree tree = new ActorTree(kit, 32, BalloonSettings.DEFAULT)) {
            tree.container("c0", 2);
            tree.group("g0", false);
            tree.commit(new AddressSpaceActor.AddRegion(tree.ram("low", 0, 0, 8)));
            assertInstanceOf(VfioGroupActor.Attached.class, tree.attach("g0", "c0"));
            // A listener before the container (like KVM's memory slots) that applies, and must be rolled back.
            TestProbe<MemoryListener.Update> slots = kit.createTestProbe();
            TestProbe<AddressSpaceActor.SubscribeResult> subscribed = kit.createTestProbe();
            tree.space.tell(new AddressSpaceActor.Subscribe("slots", 0, slots.ref(), slots.ref(),
                    subscribed.ref()));
            MemoryListener.Update initial = slots.receiveMessage();
            initial.replyTo().tell(new MemoryListener.Applied(initial.commitId(), "slots"));
            subscribed.receiveMessage();
            AddressSpaceActor.View before = tree.view();

            TestProbe<AddressSpaceActor.CommitResult> committer = kit.createTestProbe();
            tree.space.tell(new AddressSpaceActor.Commit(List.of(
                    new AddressSpaceActor.AddRegion(tree.ram("mid", 16, 8, 4)),
                    new AddressSpaceActor.AddRegion(tree.ram("high", 32, 16, 4))), committer.ref()));
            MemoryListener.Update update = slots.receiveMessage();
            assertEquals(2, update.regionAdd().size());
            update.replyTo().tell(new MemoryListener.Applied(update.commitId(), "slots"));
            MemoryListener.Update rollback = slots.receiveMessage();
            assertTrue(rollback.rollback());
            rollback.replyTo().tell(new MemoryListener.Applied(rollback.commitId(), "slots"));
            AddressSpaceActor.CommitFailed failed = (AddressSpaceActor.CommitFailed) committer.receiveMessage();
            assertTrue(failed.listener().endsWith("c0"), failed.listener());
            assertTrue(failed.reason().contains("limit of 2 mappings"), failed.reason());
            assertEquals(before.flatView(), tree.view().flatView(), "invariant 5: a failed commit changes nothing");
            assertEquals(1, tree.containerState("c0").mappings().size(), "the container undid its first map");
            slots.stop();
            tree.assertInvariants("after a refused commit");
        }
    }

    @Test
    void concurrentAttachDetachAndInflateKeepTheInvariants() {
        try (ActorTree tree = new ActorTree(kit, 64, BalloonSettings.DEFAULT)) {
            tree.container("c0", 65535);
            tree.container("c1", 65535);
            tree.container("od", 65535, DiscardMode.ON_DEMAND);
            tree.commit(new AddressSpaceActor.AddRegion(tree.ram("ram", 0, 0, 64)));
            for (int g = 0; g < 8; g++) {
                tree.group("g" + g, g == 7);
            }
            for (int page = 0; page < 64; page++) {
                tree.memory.writeLong(tree.memory.base().checkedAdd(page * PAGE), 1000 + page);
            }
            List<TestProbe<Object>> probes = new ArrayList<>();
            for (int round = 0; round < 5; round++) {
                for (int g = 0; g < 8; g++) {
                    TestProbe<Object> probe = kit.createTestProbe();
                    probes.add(probe);
                    String container = g == 7 ? "od" : g % 2 == 0 ? "c0" : "c1";
                    ActorRef<VfioGroupActor.Command> group = tree.groups.get("g" + g);
                    group.tell(new VfioGroupActor.Attach(tree.containers.get(container), container,
                            probe.ref().narrow()));
                    tree.balloon.tell(new BalloonActor.Inflate(new long[] {round * 8 + g}, probe.ref().narrow()));
                    group.tell(new VfioGroupActor.Detach(probe.ref().narrow()));
                }
            }
            for (TestProbe<Object> probe : probes) {
                probe.receiveSeveralMessages(3, Duration.ofSeconds(10));
            }
            tree.assertInvariants("after concurrent attach, inflate and detach");
            assertEquals(0, tree.balloonStatus().inhibitors());
            // Every page the balloon discarded reads zero, every other page kept its contents.
            List<Long> discarded = new ArrayList<>();
            tree.pins.discards().forEach(r -> {
                for (long a = r.base(); a < r.base() + r.size(); a += PAGE) {
                    discarded.add((a - tree.memory.base().value()) / PAGE);
                }
            });
            for (int page = 0; page < 64; page++) {
                long value = tree.memory.readLong(tree.memory.base().checkedAdd(page * PAGE));
                assertEquals(discarded.contains((long) page) ? 0 : 1000 + page, value, "page " + page);
            }
            BalloonActor.BalloonStatus status = tree.balloonStatus();
            assertEquals(40, status.pagesDiscarded() + status.pagesSkipped());
        }
    }
}
