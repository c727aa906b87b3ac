package io.actovisor.actors.vfio;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.actors.discard.DiscardManager;
import io.actovisor.actors.discard.DiscardMode;
import java.time.Duration;
import java.util.Optional;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.LoggingTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;

/**
 * The group's inhibit path, one state at a time, with probes standing in for its container and the discard manager:
 * it registers before it joins, releases only after it left (or its container stopped), answers every request once,
 * and says in {@code GetState} exactly what it holds in each state.
 */
class VfioGroupStatesTest {
    private static final ActorTestKit KIT = ActorTestKit.create();
    private static final Duration QUIET = Duration.ofMillis(200);

    @AfterAll
    static void stop() {
        KIT.shutdownTestKit();
    }

    /** A group in {@code mode} with probes for its container, the discard manager and its callers. */
    private static final class Fixture {
        final TestProbe<VfioContainerActor.Command> container = KIT.createTestProbe();
        final TestProbe<DiscardManager.Command> manager = KIT.createTestProbe();
        final TestProbe<DiscardManager.PinOwnerRequest> pinPort = KIT.createTestProbe();
        final TestProbe<VfioGroupActor.AttachResult> attachReply = KIT.createTestProbe();
        final TestProbe<VfioGroupActor.DetachResult> detachReply = KIT.createTestProbe();
        final DiscardMode mode;
        final ActorRef<VfioGroupActor.Command> group;

        Fixture(DiscardMode mode) {
            this.mode = mode;
            this.group = KIT.spawn(VfioGroupActor.create("g0", mode, manager.ref()));
        }

        void attach() {
            group.tell(new VfioGroupActor.Attach(container.ref(), "c0", attachReply.ref()));
        }

        /** Answer the container's Describe with {@code described}. */
        void describe(DiscardMode described) {
            container.expectMessageClass(VfioContainerActor.Describe.class).replyTo().tell(
                    new VfioContainerActor.Description("c0", described, pinOwner()));
        }

        DiscardManager.PinOwner pinOwner() {
            return new DiscardManager.PinOwner(container.ref(), pinPort.ref(), 2 << 20);
        }

        DiscardManager.Register expectRegister() {
            DiscardManager.Register register = manager.expectMessageClass(DiscardManager.Register.class);
            assertEquals(group, register.holder());
            assertEquals("vfio-group:g0", register.holderName());
            assertEquals(Optional.of(pinOwner()), register.pinOwner());
            return register;
        }

        VfioContainerActor.AttachGroup expectJoin() {
            VfioContainerActor.AttachGroup join = container.expectMessageClass(VfioContainerActor.AttachGroup.class);
            assertEquals("g0", join.groupId());
            assertEquals(group, join.group());
            return join;
        }

        DiscardManager.Unregister expectUnregister() {
            DiscardManager.Unregister unregister = manager.expectMessageClass(DiscardManager.Unregister.class);
            assertEquals(group, unregister.holder());
            return unregister;
        }

        VfioGroupActor.State state() {
            TestProbe<VfioGroupActor.State> probe = KIT.createTestProbe();
            group.tell(new VfioGroupActor.GetState(probe.ref()));
            return probe.receiveMessage();
        }

        void assertState(Optional<String> attachedTo, boolean registered) {
            assertEquals(new VfioGroupActor.State("g0", mode, attachedTo, registered), state());
        }

        /** Attach all the way, registering if the mode does. */
        void attached() {
            attach();
            describe(mode);
            if (mode.holderKind().isPresent()) {
                registered();
            }
            expectJoin().replyTo().tell(new VfioContainerActor.GroupAttached("c0", "g0", 1));
            assertEquals(new VfioGroupActor.Attached("g0", "c0", mode.holderKind().isPresent()),
                    attachReply.receiveMessage());
        }

        /** Expect the registration and confirm it. */
        void registered() {
            expectRegister().replyTo().tell(new DiscardManager.Registered("vfio-group:g0", mode.holderKind()
                    .orElseThrow(), 1));
        }

        void released() {
            confirm(expectUnregister());
        }

        void confirm(DiscardManager.Unregister unregister) {
            unregister.replyTo().tell(new DiscardManager.Unregistered("vfio-group:g0", mode.holderKind()
                    .orElseThrow(), 0));
        }
    }

    @Test
    void anInhibitGroupRegistersBeforeItJoinsAndReleasesOnlyAfterItLeft() {
        Fixture f = new Fixture(DiscardMode.INHIBIT);
        f.assertState(Optional.empty(), false);
        f.attach();
        f.describe(DiscardMode.INHIBIT);
        DiscardManager.Register register = f.expectRegister();
        assertEquals(DiscardManager.HolderKind.UNCOORDINATED_DISABLED, register.kind());
        f.container.expectNoMessage(QUIET); // nothing is pinned before the registration is confirmed
        f.assertState(Optional.empty(), false);
        register.replyTo().tell(new DiscardManager.Registered("vfio-group:g0", register.kind(), 1));
        VfioContainerActor.AttachGroup join = f.expectJoin();
        f.assertState(Optional.empty(), true);
        f.attachReply.expectNoMessage(QUIET);
        join.replyTo().tell(new VfioContainerActor.GroupAttached("c0", "g0", 1));
        assertEquals(new VfioGroupActor.Attached("g0", "c0", true), f.attachReply.receiveMessage());
        f.assertState(Optional.of("c0"), true);

        f.group.tell(new VfioGroupActor.Detach(f.detachReply.ref()));
        VfioContainerActor.DetachGroup leave = f.container.expectMessageClass(VfioContainerActor.DetachGroup.class);
        assertEquals("g0", leave.groupId());
        f.manager.expectNoMessage(QUIET); // the registration stays until the pins are gone
        f.assertState(Optional.of("c0"), true);
        leave.replyTo().tell(new VfioContainerActor.GroupDetached("c0", "g0", true));
        DiscardManager.Unregister unregister = f.expectUnregister();
        f.assertState(Optional.empty(), true);
        f.detachReply.expectNoMessage(QUIET);
        unregister.replyTo().tell(new DiscardManager.Unregistered("vfio-group:g0", register.kind(), 0));
        assertEquals(new VfioGroupActor.Detached("g0", "c0"), f.detachReply.receiveMessage());
        f.assertState(Optional.empty(), false);

        f.group.tell(new VfioGroupActor.Detach(f.detachReply.ref()));
        assertEquals(new VfioGroupActor.DetachFailed("g0", "group g0 is not attached"), f.detachReply.receiveMessage());
    }

    @Test
    void aCoordinatedGroupRegistersAsRequiringCoordinatedDiscards() {
        Fixture f = new Fixture(DiscardMode.COORDINATED);
        f.attach();
        f.describe(DiscardMode.COORDINATED);
        assertEquals(DiscardManager.HolderKind.COORDINATED_REQUIRED, f.expectRegister().kind());
    }

    @Test
    void anOnDemandGroupJoinsAndLeavesWithoutRegistering() {
        Fixture f = new Fixture(DiscardMode.ON_DEMAND);
        f.attached();
        f.assertState(Optional.of("c0"), false);
        f.group.tell(new VfioGroupActor.Detach(f.detachReply.ref()));
        f.container.expectMessageClass(VfioContainerActor.DetachGroup.class).replyTo().tell(
                new VfioContainerActor.GroupDetached("c0", "g0", true));
        assertEquals(new VfioGroupActor.Detached("g0", "c0"), f.detachReply.receiveMessage());
        f.manager.expectNoMessage(QUIET);
        f.assertState(Optional.empty(), false);
    }

    @Test
    void aSecondAttachIsRefusedNamingTheContainer() {
        Fixture f = new Fixture(DiscardMode.INHIBIT);
        f.attached();
        f.attach();
        assertEquals(new VfioGroupActor.AttachFailed("g0", "group g0 is already attached to container c0"),
                f.attachReply.receiveMessage());
        f.container.expectNoMessage(QUIET);
        f.manager.expectNoMessage(QUIET);
    }

    @Test
    void aContainerOfAnotherModeIsRefusedWithoutRegistering() {
        Fixture f = new Fixture(DiscardMode.INHIBIT);
        f.attach();
        f.describe(DiscardMode.COORDINATED);
        VfioGroupActor.AttachFailed failed = assertInstanceOf(VfioGroupActor.AttachFailed.class,
                f.attachReply.receiveMessage());
        assertEquals("group g0 declares discard = inhibit but container c0 has discard = coordinated; all groups of "
                + "a container share its IOMMU context and its discard mode", failed.reason());
        f.manager.expectNoMessage(QUIET);
        f.assertState(Optional.empty(), false);
        f.container.stop(); // no longer watched: the group stays idle and quiet
        f.attachReply.expectNoMessage(QUIET);
        f.assertState(Optional.empty(), false);
    }

    @Test
    void aRefusedRegistrationFailsTheAttachBeforeAnythingIsPinned() {
        Fixture f = new Fixture(DiscardMode.INHIBIT);
        f.attach();
        f.describe(DiscardMode.INHIBIT);
        f.expectRegister().replyTo().tell(new DiscardManager.RegistrationRefused("block sizes differ"));
        assertEquals(new VfioGroupActor.AttachFailed("g0", "the discard manager refused the registration: block "
                + "sizes differ"), f.attachReply.receiveMessage());
        f.container.expectNoMessage(QUIET);
        f.assertState(Optional.empty(), false);
        f.container.stop();
        f.manager.expectNoMessage(QUIET);
    }

    @Test
    void aContainerRefusingTheJoinGetsTheRegistrationReleasedBeforeTheAnswer() {
        Fixture f = new Fixture(DiscardMode.INHIBIT);
        f.attach();
        f.describe(DiscardMode.INHIBIT);
        f.registered();
        f.expectJoin().replyTo().tell(new VfioContainerActor.GroupAttachFailed("c0", "g0", "EEXIST"));
        DiscardManager.Unregister unregister = f.expectUnregister();
        f.attachReply.expectNoMessage(QUIET);
        f.confirm(unregister);
        assertEquals(new VfioGroupActor.AttachFailed("g0", "EEXIST"), f.attachReply.receiveMessage());
        f.assertState(Optional.empty(), false);
    }

    @Test
    void anOnDemandGroupRefusedByItsContainerAnswersAtOnce() {
        Fixture f = new Fixture(DiscardMode.ON_DEMAND);
        f.attach();
        f.describe(DiscardMode.ON_DEMAND);
        f.expectJoin().replyTo().tell(new VfioContainerActor.GroupAttachFailed("c0", "g0", "limit of 1 mappings"));
        assertEquals(new VfioGroupActor.AttachFailed("g0", "limit of 1 mappings"), f.attachReply.receiveMessage());
        f.manager.expectNoMessage(QUIET);
    }

    @Test
    void aContainerStoppingBeforeItDescribedItselfFailsTheAttach() {
        Fixture f = new Fixture(DiscardMode.INHIBIT);
        f.attach();
        f.container.expectMessageClass(VfioContainerActor.Describe.class);
        f.container.stop();
        assertEquals(new VfioGroupActor.AttachFailed("g0", "container c0 stopped during the attach"),
                f.attachReply.receiveMessage());
        f.manager.expectNoMessage(QUIET);
        f.assertState(Optional.empty(), false);
    }

    @Test
    void aContainerStoppingDuringTheJoinReleasesTheRegistrationThenFailsTheAttach() {
        Fixture f = new Fixture(DiscardMode.INHIBIT);
        f.attach();
        f.describe(DiscardMode.INHIBIT);
        f.registered();
        f.expectJoin();
        f.container.stop();
        DiscardManager.Unregister unregister = f.expectUnregister();
        f.attachReply.expectNoMessage(QUIET);
        f.confirm(unregister);
        assertEquals(new VfioGroupActor.AttachFailed("g0", "container c0 stopped during the attach"),
                f.attachReply.receiveMessage());
        f.assertState(Optional.empty(), false);
    }

    @Test
    void aContainerStoppingWhileRegisteringReleasesTheRegistration() {
        Fixture f = new Fixture(DiscardMode.INHIBIT);
        f.attach();
        f.describe(DiscardMode.INHIBIT);
        DiscardManager.Register register = f.expectRegister();
        f.container.stop();
        f.expectUnregister();
        register.replyTo().tell(new DiscardManager.Registered("vfio-group:g0", register.kind(), 1));
        assertEquals(new VfioGroupActor.AttachFailed("g0", "container c0 stopped during the attach"),
                f.attachReply.receiveMessage());
    }

    @Test
    void aContainerStoppingWhileAttachedReleasesTheRegistrationAndLeavesTheGroupIdle() {
        Fixture f = new Fixture(DiscardMode.INHIBIT);
        f.attached();
        LoggingTestKit.warn("Container c0 of group g0 stopped; the group is detached").expect(KIT.system(), () -> {
            f.container.stop();
            return null;
        });
        f.released();
        f.assertState(Optional.empty(), false);
        f.attachReply.expectNoMessage(QUIET);
        f.detachReply.expectNoMessage(QUIET);
    }

    @Test
    void anOnDemandGroupWhoseContainerStopsIsIdleWithoutReleasing() {
        Fixture f = new Fixture(DiscardMode.ON_DEMAND);
        f.attached();
        f.container.stop();
        f.manager.expectNoMessage(QUIET);
        f.assertState(Optional.empty(), false);
    }

    @Test
    void aContainerStoppingDuringTheDetachCompletesIt() {
        Fixture f = new Fixture(DiscardMode.INHIBIT);
        f.attached();
        f.group.tell(new VfioGroupActor.Detach(f.detachReply.ref()));
        f.container.expectMessageClass(VfioContainerActor.DetachGroup.class);
        f.container.stop();
        f.released();
        assertEquals(new VfioGroupActor.Detached("g0", "c0"), f.detachReply.receiveMessage());
        f.assertState(Optional.empty(), false);
    }

    @Test
    void aContainerThatDidNotKnowTheGroupStillEndsTheDetach() {
        Fixture f = new Fixture(DiscardMode.INHIBIT);
        f.attached();
        f.group.tell(new VfioGroupActor.Detach(f.detachReply.ref()));
        VfioContainerActor.DetachGroup leave = f.container.expectMessageClass(VfioContainerActor.DetachGroup.class);
        LoggingTestKit.warn("Container c0 did not know group g0: not here").expect(KIT.system(), () -> {
            leave.replyTo().tell(new VfioContainerActor.GroupDetachFailed("c0", "g0", "not here"));
            return null;
        });
        f.released();
        assertEquals(new VfioGroupActor.Detached("g0", "c0"), f.detachReply.receiveMessage());
        f.container.stop(); // unwatched after the answer: nothing follows
        f.manager.expectNoMessage(QUIET);
    }

    @Test
    void aRefusedReleaseIsLoggedAndTheDetachStillAnswered() {
        Fixture f = new Fixture(DiscardMode.INHIBIT);
        f.attached();
        f.group.tell(new VfioGroupActor.Detach(f.detachReply.ref()));
        f.container.expectMessageClass(VfioContainerActor.DetachGroup.class).replyTo().tell(
                new VfioContainerActor.GroupDetached("c0", "g0", true));
        DiscardManager.Unregister unregister = f.expectUnregister();
        LoggingTestKit.warn("Group g0: the discard manager refused the release: unknown holder").expect(KIT.system(),
                () -> {
                    unregister.replyTo().tell(new DiscardManager.RegistrationRefused("unknown holder"));
                    return null;
                });
        assertEquals(new VfioGroupActor.Detached("g0", "c0"), f.detachReply.receiveMessage());
    }

    @Test
    void requestsDuringAnAttachWaitForItAndAreThenServedInOrder() {
        Fixture f = new Fixture(DiscardMode.INHIBIT);
        f.attach();
        TestProbe<VfioGroupActor.AttachResult> second = KIT.createTestProbe();
        f.group.tell(new VfioGroupActor.Attach(f.container.ref(), "c0", second.ref()));
        f.group.tell(new VfioGroupActor.Detach(f.detachReply.ref()));
        f.describe(DiscardMode.INHIBIT);
        second.expectNoMessage(QUIET);
        f.registered();
        f.expectJoin().replyTo().tell(new VfioContainerActor.GroupAttached("c0", "g0", 1));
        assertInstanceOf(VfioGroupActor.Attached.class, f.attachReply.receiveMessage());
        assertEquals(new VfioGroupActor.AttachFailed("g0", "group g0 is already attached to container c0"),
                second.receiveMessage());
        // The waiting detach runs next; an attach arriving while it leaves waits too.
        VfioContainerActor.DetachGroup leave = f.container.expectMessageClass(VfioContainerActor.DetachGroup.class);
        TestProbe<VfioGroupActor.AttachResult> third = KIT.createTestProbe();
        f.group.tell(new VfioGroupActor.Attach(f.container.ref(), "c0", third.ref()));
        leave.replyTo().tell(new VfioContainerActor.GroupDetached("c0", "g0", true));
        f.released();
        assertEquals(new VfioGroupActor.Detached("g0", "c0"), f.detachReply.receiveMessage());
        f.container.expectMessageClass(VfioContainerActor.Describe.class);
        third.expectNoMessage(QUIET);
    }

    @Test
    void aGroupWithoutAModeCannotBeMade() {
        assertTrue(org.junit.jupiter.api.Assertions.assertThrows(NullPointerException.class,
                () -> VfioGroupActor.create("g0", null, KIT.createTestProbe(DiscardManager.Command.class).ref()))
                .getMessage().contains("mode"));
    }
}
