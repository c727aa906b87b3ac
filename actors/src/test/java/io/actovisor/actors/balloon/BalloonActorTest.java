package io.actovisor.actors.balloon;

import static io.actovisor.actors.testing.ActorTree.PAGE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.ConfigFactory;
import io.actovisor.actors.discard.DiscardManager;
import io.actovisor.actors.events.ActovisorEvent;
import io.actovisor.actors.memory.AddressSpaceActor;
import io.actovisor.actors.testing.ActorTree;
import io.actovisor.actors.testing.NativeTestKit;
import io.actovisor.actors.vfio.VfioGroupActor;
import io.actovisor.memory.GuestAddress;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.MemoryRegion;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import org.apache.pekko.actor.testkit.typed.javadsl.LoggingTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.eventstream.EventStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/** The balloon's own protocol: targets, asking the discard manager, and the unsafe override. */
class BalloonActorTest {
    @RegisterExtension
    static final NativeTestKit KIT = new NativeTestKit();

    @Test
    void settingsComeFromReferenceConf() {
        assertEquals(BalloonSettings.DEFAULT, BalloonSettings.create(ConfigFactory.load()));
        BalloonSettings drain = BalloonSettings.create(ConfigFactory.parseString(
                "actovisor.balloon.drain-timeout = 3s").withFallback(ConfigFactory.load()));
        assertEquals(java.time.Duration.ofSeconds(3), drain.drainTimeout());
        // One place says whether to ignore the inhibitors, the VM definition; this tree does not.
        assertFalse(BalloonSettings.create(ConfigFactory.parseString(
                "actovisor.balloon.unsafe-ignore-inhibitor = true").withFallback(ConfigFactory.load()))
                .unsafeIgnoreInhibitor());
    }

    @Test
    void targetsAreCheckedAndWatched() {
        try (ActorTree tree = new ActorTree(KIT.kit(), 16, BalloonSettings.DEFAULT)) {
            tree.commit(new AddressSpaceActor.AddRegion(tree.ram("ram", 0, 0, 16)));
            TestProbe<Long> watcher = KIT.kit().createTestProbe();
            tree.balloon.tell(new BalloonActor.WatchTarget(watcher.ref()));
            assertEquals(0L, watcher.receiveMessage());
            assertEquals(new BalloonActor.TargetSet(8 * PAGE), tree.ask(BalloonActor.TargetResult.class,
                    r -> new BalloonActor.SetTarget(8 * PAGE, r), tree.balloon));
            assertEquals(8 * PAGE, watcher.receiveMessage());
            for (long bad : new long[] {-4096, 17 * PAGE, 100}) {
                BalloonActor.TargetRefused refused = (BalloonActor.TargetRefused) tree.ask(
                        BalloonActor.TargetResult.class, r -> new BalloonActor.SetTarget(bad, r), tree.balloon);
                assertTrue(refused.reason().contains(Long.toString(bad)), refused.reason());
            }
            assertEquals(8 * PAGE, tree.balloonStatus().targetBytes());
        }
    }

    @Test
    void statusReportsTheDiscardManagersHolders() {
        try (ActorTree tree = new ActorTree(KIT.kit(), 16, BalloonSettings.DEFAULT)) {
            TestProbe<Object> holder = KIT.kit().createTestProbe();
            TestProbe<DiscardManager.RegistrationResult> replies = KIT.kit().createTestProbe();
            tree.discard.tell(new DiscardManager.Register(holder.ref(), "test-holder",
                    DiscardManager.HolderKind.UNCOORDINATED_DISABLED, Optional.empty(), replies.ref()));
            replies.expectMessageClass(DiscardManager.Registered.class);
            BalloonActor.BalloonStatus status = tree.balloonStatus();
            assertEquals(1, status.inhibitors());
            assertEquals(List.of("test-holder"), status.holders());
        }
    }

    @Test
    void withoutAnAnswerFromItsManagerTheBalloonDiscardsNothing() {
        try (HostMemory ram = HostMemory.anonymous("silent-ram", 16 * PAGE)) {
            ActorRef<AddressSpaceActor.Command> space = KIT.kit().spawn(AddressSpaceActor.create("silent"));
            TestProbe<AddressSpaceActor.CommitResult> committed = KIT.kit().createTestProbe();
            space.tell(new AddressSpaceActor.Commit(List.of(new AddressSpaceActor.AddRegion(
                    MemoryRegion.ram("ram", GuestAddress.ZERO, ram))), committed.ref()));
            committed.expectMessageClass(AddressSpaceActor.Committed.class);
            TestProbe<DiscardManager.Command> manager = KIT.kit().createTestProbe();
            ActorRef<BalloonActor.Command> balloon = KIT.kit().spawn(BalloonActor.create("silent", space,
                    BalloonSettings.DEFAULT, manager.ref()), "silent-balloon", BalloonActor.DISPATCHER);
            ram.writeLong(ram.base().checkedAdd(PAGE), 77);
            TestProbe<BalloonActor.InflateResult> inflated = KIT.kit().createTestProbe();
            balloon.tell(new BalloonActor.Inflate(new long[] {1}, inflated.ref()));
            manager.expectMessageClass(DiscardManager.RequestDiscard.class);
            // The manager never answers: the inflate is answered once the balloon gives up waiting.
            BalloonActor.InflateResult result = inflated.expectMessageClass(BalloonActor.InflateResult.class,
                    BalloonActor.DECISION_TIMEOUT.plusSeconds(5));
            assertEquals(new BalloonActor.InflateResult(1, 0, 1, 0, List.of()), result);
            assertEquals(77, ram.readLong(ram.base().checkedAdd(PAGE)));
            KIT.kit().stop(balloon);
            KIT.kit().stop(space);
        }
    }

    @Test
    void unsafeIgnoreInhibitorDiscardsPinnedPagesLoudly() {
        TestProbe<ActovisorEvent.UnsafeDiscard> unsafe = KIT.kit().createTestProbe();
        KIT.kit().system().eventStream().tell(new EventStream.Subscribe<>(ActovisorEvent.UnsafeDiscard.class,
                unsafe.ref()));
        ActorTree[] holder = new ActorTree[1];
        LoggingTestKit.warn("unsafe-ignore-inhibitor = true").expect(KIT.kit().system(), () -> {
            holder[0] = new ActorTree(KIT.kit(), 16, BalloonSettings.DEFAULT.withUnsafeIgnoreInhibitor(true));
            return holder[0].balloonStatus();
        });
        try (ActorTree tree = holder[0]) {
            tree.container("c0", 65535);
            tree.group("g0", false);
            tree.commit(new AddressSpaceActor.AddRegion(tree.ram("ram", 0, 0, 16)));
            assertInstanceOf(VfioGroupActor.Attached.class, tree.attach("g0", "c0"));
            tree.memory.writeLong(tree.memory.base().checkedAdd(2 * PAGE), 42);
            BalloonActor.InflateResult result = tree.inflate(2);
            assertEquals(1, result.pagesDiscarded());
            assertEquals(0, tree.memory.readLong(tree.memory.base().checkedAdd(2 * PAGE)));
            assertEquals(1, unsafe.receiveMessage().pages());
            BalloonActor.BalloonStatus status = tree.balloonStatus();
            assertEquals(1, status.unsafeDiscards());
            assertTrue(status.unsafeIgnoreInhibitor());
            assertEquals(1, tree.pins.violations().size(), "the pin watch sees the very bug the setting allows");
        }
    }

    @Test
    void framesInflatedBeforeTheFirstViewArrivesAreJudgedAgainstIt() {
        try (HostMemory ram = HostMemory.anonymous("early-ram", 16 * PAGE)) {
            ActorRef<AddressSpaceActor.Command> space = KIT.kit().spawn(AddressSpaceActor.create("early"));
            TestProbe<AddressSpaceActor.CommitResult> committed = KIT.kit().createTestProbe();
            space.tell(new AddressSpaceActor.Commit(List.of(new AddressSpaceActor.AddRegion(
                    MemoryRegion.ram("ram", GuestAddress.ZERO, ram))), committed.ref()));
            committed.expectMessageClass(AddressSpaceActor.Committed.class);
            ActorRef<DiscardManager.Command> manager = KIT.kit().spawn(DiscardManager.create("early",
                    Duration.ofSeconds(5)));
            ActorRef<BalloonActor.Command> balloon = KIT.kit().spawn(BalloonActor.create("early", space,
                    BalloonSettings.DEFAULT, manager), "early-balloon", BalloonActor.DISPATCHER);
            // Sent at once: the balloon's subscription to the address space is still on its way.
            TestProbe<BalloonActor.InflateResult> inflated = KIT.kit().createTestProbe();
            balloon.tell(new BalloonActor.Inflate(new long[] {1, 2, 3}, inflated.ref()));
            BalloonActor.InflateResult result = inflated.receiveMessage();
            assertEquals(List.of(), result.rejected(), "every frame is guest RAM");
            assertEquals(3, result.pagesDiscarded());
            KIT.kit().stop(balloon);
            KIT.kit().stop(manager);
            KIT.kit().stop(space);
        }
    }
}
