package io.actovisor.actors.balloon;

import static io.actovisor.actors.testing.ActorTree.PAGE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.actors.device.DeviceIo;
import io.actovisor.actors.discard.DiscardManager;
import io.actovisor.actors.memory.AddressSpaceActor;
import io.actovisor.actors.testing.ActorTree;
import io.actovisor.actors.testing.NativeTestKit;
import io.actovisor.devices.balloon.VirtioBalloon;
import io.actovisor.devices.guest.scripted.RegisterBus;
import io.actovisor.devices.guest.scripted.SplitQueueDriver;
import io.actovisor.devices.guest.scripted.VirtioMmioDriver;
import io.actovisor.devices.virtio.VirtioMmio;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.FlatView;
import io.actovisor.memory.GuestAddress;
import io.actovisor.memory.GuestMemory;
import io.actovisor.memory.GuestMemoryView;
import io.actovisor.memory.HostAddress;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.MemoryRegion;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.javadsl.AskPattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * Inflates whose discard the balloon defers to its worker ({@link BalloonActor.Inflate#deferDiscard()}): nothing
 * queued may overtake a deflate, a registration, or a stop. The worker's one thread is held by a blocker for the
 * moments in between, so "before the worker ran" is a state of the test, not a race.
 */
class DeferredDiscardTest {
    @RegisterExtension
    static final NativeTestKit KIT = new NativeTestKit();

    private static final Duration NOTHING = Duration.ofMillis(300);

    private static BalloonActor.InflateResult inflateDeferred(ActorTree tree, long... frames) {
        return tree.ask(BalloonActor.InflateResult.class, r -> new BalloonActor.Inflate(frames, r, true),
                tree.balloon);
    }

    private static long resident(ActorTree tree, long frame) {
        return tree.memory.residentBytes(AddressRange.of(tree.memory.base().value() + frame * PAGE, PAGE));
    }

    private static HostAddress at(ActorTree tree, long frame) {
        return tree.memory.base().checkedAdd(frame * PAGE);
    }

    @Test
    void aDeflateWaitsForTheQueuedDiscardAndThePageIsNotDiscardedAfterIt() throws Exception {
        try (ActorTree tree = new ActorTree(KIT.kit(), 16, BalloonSettings.DEFAULT)) {
            tree.commit(new AddressSpaceActor.AddRegion(tree.ram("ram", 0, 0, 16)));
            tree.memory.writeLong(at(tree, 3), 7);
            TestProbe<BalloonActor.DeflateResult> deflated = KIT.kit().createTestProbe();
            try (DiscardThreadBlocker blocker = new DiscardThreadBlocker(KIT.kit())) {
                BalloonActor.InflateResult inflated = inflateDeferred(tree, 3);
                assertEquals(1, inflated.pagesDiscarded(), "queued");
                assertEquals(PAGE, resident(tree, 3), "answered before the worker ran: the page is still there");
                tree.balloon.tell(new BalloonActor.Deflate(new long[] {3}, deflated.ref()));
                deflated.expectNoMessage(NOTHING); // the deflate waits for the queue
            }
            assertEquals(new BalloonActor.DeflateResult(1, List.of()), deflated.receiveMessage());
            assertEquals(0, tree.memory.readLong(at(tree, 3)), "the discard ran before the deflate was answered");
            tree.memory.writeLong(at(tree, 3), 42); // the guest uses its page again
            BalloonActor.BalloonStatus status = tree.balloonStatus(); // flushes: nothing is queued any more
            assertEquals(1, status.pagesDiscarded());
            assertEquals(1, status.discards());
            assertEquals(42, tree.memory.readLong(at(tree, 3)), "no discard after the deflate");
            assertEquals(PAGE, resident(tree, 3));
            assertEquals(List.of(), tree.pins.violations());
        }
    }

    @Test
    void queuedDiscardsOfSeveralInflatesMergeIntoOneCallAndCountOnce() throws Exception {
        try (ActorTree tree = new ActorTree(KIT.kit(), 16, BalloonSettings.DEFAULT)) {
            tree.commit(new AddressSpaceActor.AddRegion(tree.ram("ram", 0, 0, 16)));
            tree.memory.populate(0, 16 * PAGE);
            try (DiscardThreadBlocker blocker = new DiscardThreadBlocker(KIT.kit())) {
                assertEquals(2, inflateDeferred(tree, 4, 5).pagesDiscarded());
                assertEquals(2, inflateDeferred(tree, 6, 7).pagesDiscarded());
                assertEquals(1, inflateDeferred(tree, 9).pagesDiscarded());
            }
            TestProbe<BalloonActor.Flushed> flushed = KIT.kit().createTestProbe();
            tree.balloon.tell(new BalloonActor.Flush(flushed.ref()));
            assertTrue(flushed.receiveMessage().lastDiscardNanos() != 0);
            assertEquals(0, tree.memory.residentBytes(AddressRange.of(tree.memory.base().value() + 4 * PAGE,
                    4 * PAGE)));
            assertEquals(0, resident(tree, 9));
            assertEquals(PAGE, resident(tree, 8), "a frame no inflate gave is kept");
            BalloonActor.BalloonStatus status = tree.balloonStatus();
            assertEquals(5, status.pagesDiscarded());
            assertEquals(2, status.discards(), "frames 4-7 of two inflates in one call, 9 in another");
            assertEquals(5 * PAGE, status.actualBytes());
        }
    }

    @Test
    void aQueueBelowTheRunSizeIsDiscardedWithoutAFlushAndAFullOneInOneCall() throws Exception {
        long frames = DiscardWorker.RUN_AT_PAGES + 16;
        try (ActorTree tree = new ActorTree(KIT.kit(), frames, BalloonSettings.DEFAULT)) {
            tree.commit(new AddressSpaceActor.AddRegion(tree.ram("ram", 0, 0, frames)));
            tree.memory.populate(0, frames * PAGE);
            assertEquals(1, inflateDeferred(tree, 3).pagesDiscarded());
            // No flush, no status request: the worker's wait for more ends and the page goes.
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (resident(tree, 3) != 0 && System.nanoTime() < deadline) {
                Thread.sleep(5);
            }
            assertEquals(0, resident(tree, 3), "a small queue is discarded after the worker's wait");

            long[] run = new long[(int) DiscardWorker.RUN_AT_PAGES];
            for (int i = 0; i < run.length; i++) {
                run[i] = 16 + i;
            }
            try (DiscardThreadBlocker blocker = new DiscardThreadBlocker(KIT.kit())) {
                assertEquals(run.length, inflateDeferred(tree, run).pagesDiscarded());
            }
            // A queue of the run size is discarded as soon as the worker's thread is free, with no timer: the
            // balloon's next message (a status request, which flushes) finds it done in one call.
            BalloonActor.BalloonStatus status = tree.balloonStatus();
            assertEquals(1 + run.length, status.pagesDiscarded());
            assertEquals(2, status.discards(), "frame 3 after the wait, then the run in one call");
            assertEquals(0, tree.memory.residentBytes(AddressRange.of(tree.memory.base().value() + 16 * PAGE,
                    run.length * PAGE)));
        }
    }

    @Test
    void aHolderIsToldItIsRegisteredOnlyAfterTheQueuedDiscardRan() throws Exception {
        try (ActorTree tree = new ActorTree(KIT.kit(), 16, BalloonSettings.DEFAULT)) {
            tree.commit(new AddressSpaceActor.AddRegion(tree.ram("ram", 0, 0, 16)));
            tree.memory.writeLong(at(tree, 2), 5);
            TestProbe<Object> holder = KIT.kit().createTestProbe();
            TestProbe<DiscardManager.RegistrationResult> registered = KIT.kit().createTestProbe();
            try (DiscardThreadBlocker blocker = new DiscardThreadBlocker(KIT.kit())) {
                inflateDeferred(tree, 2);
                tree.discard.tell(new DiscardManager.Register(holder.ref(), "late-holder",
                        DiscardManager.HolderKind.UNCOORDINATED_DISABLED, Optional.empty(), registered.ref()));
                registered.expectNoMessage(NOTHING); // it could pin the page: the discard runs first
                assertEquals(PAGE, resident(tree, 2));
            }
            registered.expectMessageClass(DiscardManager.Registered.class);
            assertEquals(0, resident(tree, 2), "discarded before the holder went on");
            // From now on discards are refused, and nothing is deferred.
            tree.memory.writeLong(at(tree, 6), 9);
            BalloonActor.InflateResult refused = inflateDeferred(tree, 6);
            assertEquals(1, refused.pagesSkipped());
            assertEquals(9, tree.memory.readLong(at(tree, 6)));
        }
    }

    @Test
    void aDirectInflateIsStillAnsweredAfterItsDiscard() {
        try (ActorTree tree = new ActorTree(KIT.kit(), 16, BalloonSettings.DEFAULT)) {
            tree.commit(new AddressSpaceActor.AddRegion(tree.ram("ram", 0, 0, 16)));
            tree.memory.writeLong(at(tree, 1), 3);
            assertEquals(1, tree.inflate(1).pagesDiscarded());
            assertEquals(0, resident(tree, 1));
        }
    }

    @Test
    void aBalloonStoppedWithDiscardsQueuedDropsThemAndItsTicketsAreVoid() throws Exception {
        try (ActorTree tree = new ActorTree(KIT.kit(), 16, BalloonSettings.DEFAULT)) {
            tree.commit(new AddressSpaceActor.AddRegion(tree.ram("ram", 0, 0, 16)));
            tree.memory.writeLong(at(tree, 5), 11);
            TestProbe<Object> holder = KIT.kit().createTestProbe();
            TestProbe<DiscardManager.RegistrationResult> registered = KIT.kit().createTestProbe();
            Thread stopper;
            try (DiscardThreadBlocker blocker = new DiscardThreadBlocker(KIT.kit())) {
                inflateDeferred(tree, 5);
                // The balloon stops only once its worker has: stop it from elsewhere, and let the stop reach the
                // worker while its thread is still held.
                stopper = new Thread(() -> KIT.kit().stop(tree.balloon, Duration.ofSeconds(30)));
                stopper.start();
                Thread.sleep(NOTHING.toMillis());
            }
            stopper.join(30_000);
            tree.discard.tell(new DiscardManager.Register(holder.ref(), "after-stop",
                    DiscardManager.HolderKind.UNCOORDINATED_DISABLED, Optional.empty(), registered.ref()));
            registered.expectMessageClass(DiscardManager.Registered.class); // the stopped balloon's ticket is void
            assertEquals(11, tree.memory.readLong(at(tree, 5)), "the queued discard was dropped, not run");
            assertEquals(PAGE, resident(tree, 5));
        }
    }

    /** The driver's register accesses, as asks to the device actor (what a vCPU's MMIO exit does). */
    private static RegisterBus bus(ActorRef<DeviceIo.Command> device) {
        return new RegisterBus() {
            @Override
            public CompletionStage<Long> read(long offset, int size) {
                return AskPattern.<DeviceIo.Command, DeviceIo.Result>ask(device,
                        r -> new DeviceIo.Read(DeviceIo.Space.MMIO, offset, offset, size, r), Duration.ofSeconds(10),
                        KIT.kit().scheduler()).thenApply(r -> ((DeviceIo.Completed) r).value());
            }

            @Override
            public CompletionStage<Void> write(long offset, int size, long value) {
                return AskPattern.<DeviceIo.Command, DeviceIo.Result>ask(device,
                        r -> new DeviceIo.Write(DeviceIo.Space.MMIO, offset, offset, size, value, r),
                        Duration.ofSeconds(10), KIT.kit().scheduler()).thenApply(r -> null);
            }
        };
    }

    @Test
    void theDeviceDefersItsInflatesAndAResetAfterThemWaitsForTheBalloonsQueue() throws Exception {
        deviceInflate(VirtioBalloon.F_MUST_TELL_HOST, true);
    }

    @Test
    void aDriverThatMayReusePagesUntoldHasItsInflatesAnsweredOnlyAfterTheDiscard() throws Exception {
        deviceInflate(0, false);
    }

    /**
     * A driver that negotiates {@code features} inflates one frame through the device, then resets it: the device
     * defers the discard only when the driver promised to tell before reusing a page, and a reset after a deferred
     * inflate waits for the balloon's queue.
     */
    private void deviceInflate(long features, boolean deferred) throws Exception {
        try (HostMemory ram = HostMemory.anonymous("deferred-device-ram", 1 << 20)) {
            GuestMemory memory = GuestMemory.of(FlatView.of(List.of(MemoryRegion.ram("ram", GuestAddress.ZERO,
                    ram))));
            TestProbe<BalloonActor.Command> balloon = KIT.kit().createTestProbe();
            ActorRef<DeviceIo.Command> device = KIT.kit().spawn(VirtioBalloonActor.create(GuestMemoryView.of(memory),
                    balloon.ref(), false, Duration.ofHours(1)));
            balloon.expectMessageClass(BalloonActor.WatchTarget.class);
            SplitQueueDriver inflate = new SplitQueueDriver(GuestMemoryView.of(memory), 16 * PAGE, 16);
            SplitQueueDriver deflate = new SplitQueueDriver(GuestMemoryView.of(memory), 17 * PAGE, 16);
            VirtioMmioDriver transport = new VirtioMmioDriver("balloon", bus(device));
            // The driver's first reset: nothing was inflated, so the balloon is not asked.
            transport.initialize(VirtioBalloon.DEVICE_ID, features, List.of(inflate, deflate)).toCompletableFuture()
                    .get(10, TimeUnit.SECONDS);
            memory.writeInt(GuestAddress.of(18 * PAGE), 40);
            inflate.add(List.of(new SplitQueueDriver.Buffer(18 * PAGE, 4, false)));
            CompletableFuture<Void> notified = transport.notify(VirtioBalloon.INFLATE_QUEUE).toCompletableFuture();
            BalloonActor.Inflate request = balloon.expectMessageClass(BalloonActor.Inflate.class);
            assertEquals(deferred, request.deferDiscard(), deferred
                    ? "the device lets the balloon answer before the madvise"
                    : "without MUST_TELL_HOST the balloon answers only after the madvise");
            request.replyTo().tell(new BalloonActor.InflateResult(1, 1, 0, 1, List.of(), 0));
            notified.get(10, TimeUnit.SECONDS);
            if (!deferred) {
                KIT.kit().stop(device);
                return;
            }

            TestProbe<DeviceIo.Result> reset = KIT.kit().createTestProbe();
            device.tell(new DeviceIo.Write(DeviceIo.Space.MMIO, VirtioMmio.STATUS, VirtioMmio.STATUS, 4, 0,
                    reset.ref()));
            BalloonActor.Flush flush = balloon.expectMessageClass(BalloonActor.Flush.class);
            reset.expectNoMessage(NOTHING); // the guest may reuse every page after the reset: not before the queue ran
            flush.replyTo().tell(new BalloonActor.Flushed(System.nanoTime()));
            assertEquals(new DeviceIo.Completed(0), reset.receiveMessage());
            KIT.kit().stop(device);
        }
    }
}
