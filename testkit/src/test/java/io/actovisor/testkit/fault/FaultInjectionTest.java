package io.actovisor.testkit.fault;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.actors.balloon.BalloonSettings;
import io.actovisor.actors.memory.AddressSpaceActor;
import io.actovisor.actors.vfio.VfioGroupActor;
import io.actovisor.devices.iommu.model.ModelIommu;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.sys.Errno;
import io.actovisor.memory.sys.NativeException;
import io.actovisor.memory.sys.Posix;
import io.actovisor.testkit.ActorTree;
import io.actovisor.testkit.ActovisorTest;
import io.actovisor.testkit.Invariants;
import java.time.Duration;
import java.util.List;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.junit.jupiter.api.Test;

/** The testkit's faults on a VM's actor tree: IOMMU errnos and stalls, crashes by name, lost messages, seeds. */
@ActovisorTest
class FaultInjectionTest {
    private static final long PAGES = 32;
    private final ActorTestKit kit;

    FaultInjectionTest(ActorTestKit kit) {
        this.kit = kit;
    }

    private ActorTree tree(BalloonSettings settings) {
        ActorTree tree = new ActorTree(kit, PAGES, settings);
        tree.commit(new AddressSpaceActor.AddRegion(tree.ram("ram", 0, 0, PAGES)));
        return tree;
    }

    private static FaultyIommu faulty(ActorTree tree, IommuFault... faults) {
        return FaultyIommu.wrap(tree.pins.backend(ModelIommu.BACKEND, () -> ModelIommu.create(65535)), faults);
    }

    /** Wait until the tree's invariants hold (actors settle after a crash); fail with the violations if not. */
    private void awaitInvariants(ActorTree tree) {
        kit.createTestProbe().awaitAssert(Duration.ofSeconds(10), () -> {
            assertEquals(List.of(), Invariants.check(tree));
            return null;
        });
    }

    @Test
    void aMapFailingWithAnErrnoFailsTheAttachAndPinsNothing() {
        try (ActorTree tree = tree(BalloonSettings.DEFAULT)) {
            FaultyIommu iommu = faulty(tree, IommuFault.fail(IommuFault.Operation.MAP, 1, Errno.ENOMEM));
            tree.container("c0", iommu);
            tree.group("g0", false);
            VfioGroupActor.AttachFailed failed = assertInstanceOf(VfioGroupActor.AttachFailed.class,
                    tree.attach("g0", "c0"));
            assertTrue(failed.reason().contains("ioctl(VFIO_IOMMU_MAP_DMA) failed: ENOMEM (12)"), failed.reason());
            assertEquals(List.of("map #1 fails with ENOMEM at " + AddressRange.of(0, PAGES * ActorTree.PAGE)),
                    iommu.injected());
            assertEquals(0, tree.pins.pinnedBytes());
            awaitInvariants(tree);
        }
    }

    @Test
    void aPinFailureIsReportedAsOne() {
        try (ActorTree tree = tree(BalloonSettings.DEFAULT)) {
            tree.container("c0", faulty(tree, IommuFault.fail(IommuFault.Operation.PIN, 1, Errno.EFAULT)));
            tree.group("g0", false);
            VfioGroupActor.AttachFailed failed = assertInstanceOf(VfioGroupActor.AttachFailed.class,
                    tree.attach("g0", "c0"));
            assertTrue(failed.reason().contains("pinning"), failed.reason());
            awaitInvariants(tree);
        }
    }

    @Test
    void aStallingMapDelaysTheAttachWithoutBreakingIt() {
        try (ActorTree tree = tree(BalloonSettings.DEFAULT)) {
            FaultyIommu iommu = faulty(tree, IommuFault.stall(IommuFault.Operation.MAP, 1, Duration.ofMillis(200)));
            tree.container("c0", iommu);
            tree.group("g0", false);
            assertInstanceOf(VfioGroupActor.Attached.class, tree.attach("g0", "c0"));
            assertEquals(1, iommu.injected().size());
            awaitInvariants(tree);
        }
    }

    @Test
    void aContainerCrashingAtItsNextMessageLeavesExactCounts() {
        try (ActorTree tree = tree(BalloonSettings.DEFAULT)) {
            tree.container("c0", 65535);
            tree.group("g0", false);
            assertInstanceOf(VfioGroupActor.Attached.class, tree.attach("g0", "c0"));
            assertEquals(PAGES * ActorTree.PAGE, tree.pins.pinnedBytes());
            tree.crashAt("c0", 1);
            tree.inflate(3);
            // The balloon's commit-free inflate does not reach the container: crash it with a state query.
            TestProbe<Object> probe = kit.createTestProbe();
            tree.space.tell(new AddressSpaceActor.Commit(List.of(new AddressSpaceActor.AddRegion(
                    tree.ram("extra", 64, 0, 1))), probe.ref().narrow()));
            // The commit is answered once the crashed container is gone: a check before that could ask it for its
            // state after the crash, and wait out the whole limit for an answer that never comes.
            probe.receiveMessage(Duration.ofSeconds(10));
            awaitInvariants(tree);
            assertEquals(0, tree.pins.pinnedBytes(), "the crashed container's IOMMU was closed");
            // The group hears of its container's end through its watch, then releases its registration.
            probe.awaitAssert(Duration.ofSeconds(10), () -> {
                assertEquals(0, tree.discardState().uncoordinatedHolders(),
                        "the group attached to it no longer holds");
                return null;
            });
        }
    }

    @Test
    void aDelayedMessageBetweenGroupAndContainerStillAttaches() {
        try (ActorTree tree = tree(BalloonSettings.DEFAULT)) {
            tree.container("c0", 65535);
            tree.group("g0", false);
            tree.link(Link.delay("g0", "c0", 1, Duration.ofMillis(100)));
            assertInstanceOf(VfioGroupActor.Attached.class, tree.attach("g0", "c0"));
            awaitInvariants(tree);
        }
    }

    @Test
    void aLostAttachLeavesNothingOnceTheWaitingGroupStops() {
        try (ActorTree tree = tree(BalloonSettings.DEFAULT)) {
            tree.container("c0", 65535);
            tree.group("g0", false);
            tree.link(Link.drop("g0", "c0", 1));
            TestProbe<VfioGroupActor.AttachResult> reply = kit.createTestProbe();
            tree.attach("g0", "c0", reply.ref());
            reply.expectNoMessage(Duration.ofMillis(300));
            assertEquals(List.of(), tree.containerState("c0").groups(), "the container never heard of g0");
            tree.stopGroup("g0");
            awaitInvariants(tree);
            assertEquals(0, tree.discardState().uncoordinatedHolders());
        }
    }

    @Test
    void misuseNamesWhatWasAsked() {
        try (ActorTree tree = tree(BalloonSettings.DEFAULT)) {
            tree.container("c0", 65535);
            tree.group("g0", false);
            assertEquals("cannot crash 'c9': this tree has no actor of that name; its actors are [memory, balloon, c0,"
                    + " g0]", assertThrows(IllegalArgumentException.class, () -> tree.crashAt("c9", 1)).getMessage());
            assertEquals("cannot intercept messages from 'c0' to 'g0': the testkit intercepts what a group sends its "
                    + "container; groups [g0], containers [c0]", assertThrows(IllegalArgumentException.class,
                            () -> tree.link(Link.drop("c0", "g0", 1))).getMessage());
        }
        Seed seed = new Seed("attach-detach/groups=2", 42);
        assertEquals("seed attach-detach/groups=2#2a is for a scenario of shape 'attach-detach/groups=2', but it was "
                + "given to a scenario of shape 'attach-detach/groups=3'", assertThrows(
                        IllegalArgumentException.class, () -> FaultPlan.draw(seed, "attach-detach/groups=3", 4,
                                List.of(), 4)).getMessage());
        assertEquals("'nonsense' is not a seed: expected shape#hex, as a failing test prints it",
                assertThrows(IllegalArgumentException.class, () -> Seed.parse("nonsense")).getMessage());
    }

    @Test
    void aSeedReplaysTheSameFaults() {
        Seed seed = Seed.random("attach-detach/groups=2");
        FaultPlan plan = FaultPlan.draw(seed, "attach-detach/groups=2", 4, List.of("c0", "g0", "g1"), 6);
        assertEquals(plan, FaultPlan.draw(Seed.parse(seed.toString()), "attach-detach/groups=2", 4,
                List.of("c0", "g0", "g1"), 6), "seed " + seed);
    }

    /**
     * A seeded scenario: two groups attach and detach twice each while the plan's IOMMU fault and crash strike; at
     * the end the invariants hold. A failure names the seed, and {@code Seed.parse} of it replays the same plan.
     */
    /** Seeds of the seeded scenario that CI replays on every build (a failing seed found later joins them). */
    private static final List<String> SEEDS = List.of("attach-detach/groups=2#1", "attach-detach/groups=2#2",
            "attach-detach/groups=2#3", "attach-detach/groups=2#5", "attach-detach/groups=2#6");

    /**
     * Seed #4 found a real bug: container c0 crashes on the {@code DetachGroup} of g0, and g0, which stopped
     * watching its container when the detach began, waited for the answer for ever, so the Detach was never
     * answered. The group now watches its container until the container answers the detach, and a container that
     * stops during it completes the detach (its PostStop unpinned everything).
     */
    @Test
    void seedFourAContainerCrashingDuringADetach() {
        runSeeded(Seed.parse("attach-detach/groups=2#4"));
    }

    @org.junit.jupiter.params.ParameterizedTest
    @org.junit.jupiter.params.provider.FieldSource("SEEDS")
    void seededFaultsLeaveTheInvariantsIntact(String seed) {
        try {
            runSeeded(Seed.parse(seed));
        } catch (AssertionError e) {
            throw new AssertionError("seed " + seed + " (replay: Seed.parse(\"" + seed + "\")): " + e.getMessage(),
                    e);
        }
    }

    /**
     * Two groups attach and detach twice each while the plan's IOMMU fault and crash strike. Every request is
     * answered, except one to the very group the plan crashed; at the end the invariants hold.
     */
    private void runSeeded(Seed seed) {
        FaultPlan plan = FaultPlan.draw(seed, "attach-detach/groups=2", 6, List.of("c0", "g0", "g1"), 6);
        try (ActorTree tree = tree(BalloonSettings.DEFAULT)) {
            tree.container("c0", faulty(tree, plan.iommu()));
            tree.group("g0", false);
            tree.group("g1", false);
            plan.crash().ifPresent(c -> tree.crashAt(c.actor(), c.nth()));
            for (int cycle = 0; cycle < 2; cycle++) {
                for (String group : List.of("g0", "g1")) {
                    if (tree.groups.containsKey(group) && tree.containers.containsKey("c0")) {
                        TestProbe<VfioGroupActor.AttachResult> reply = kit.createTestProbe();
                        tree.attach(group, "c0", reply.ref());
                        expectAnswer(tree, group, reply, plan);
                    }
                }
                for (String group : List.of("g0", "g1")) {
                    if (tree.groups.containsKey(group)) {
                        TestProbe<VfioGroupActor.DetachResult> reply = kit.createTestProbe();
                        tree.groups.get(group).tell(new VfioGroupActor.Detach(reply.ref()));
                        expectAnswer(tree, group, reply, plan);
                    }
                }
            }
            awaitInvariants(tree);
        }
    }

    private static void expectAnswer(ActorTree tree, String group, TestProbe<?> reply, FaultPlan plan) {
        try {
            reply.receiveMessage(Duration.ofSeconds(5));
        } catch (AssertionError unanswered) {
            boolean askedTheCrashedGroup = plan.crash().map(c -> c.actor().equals(group)).orElse(false)
                    && !tree.groups.containsKey(group);
            if (!askedTheCrashedGroup) {
                throw new AssertionError("group " + group + " did not answer within 5 s under " + plan, unanswered);
            }
        }
    }

    @Test
    void aFailingDiscardReportsItsErrno() {
        org.junit.jupiter.api.Assumptions.assumeTrue(Posix.isAvailable());
        DiscardFault posix = new DiscardFault(Posix.system(), 2, Errno.EIO);
        try (HostMemory memory = HostMemory.anonymous(posix, "discard-fault", 4 * ActorTree.PAGE)) {
            memory.discard(0, ActorTree.PAGE);
            NativeException e = assertThrows(NativeException.class, () -> memory.discard(ActorTree.PAGE,
                    ActorTree.PAGE));
            assertEquals("madvise(MADV_DONTNEED) failed: EIO (5): injected fault", e.getMessage());
            assertEquals(2, posix.discards());
        }
    }

    @Test
    void withUnsafeIgnoreInhibitorTheInvariantsNameExactlyTheDiscardedPinnedPages() {
        try (ActorTree tree = tree(BalloonSettings.DEFAULT.withUnsafeIgnoreInhibitor(true))) {
            tree.container("c0", 65535);
            tree.group("g0", false);
            assertInstanceOf(VfioGroupActor.Attached.class, tree.attach("g0", "c0"));
            assertEquals(List.of(), Invariants.check(tree));
            tree.inflate(3, 4, 9);
            List<Invariants.Violation> violations = Invariants.check(tree);
            assertEquals(List.of(1, 1), violations.stream().map(Invariants.Violation::invariant).toList());
            assertEquals(List.of(3L, 4L, 9L), violations.stream().flatMap(v -> v.guestPages().stream()).toList());
        }
    }
}
