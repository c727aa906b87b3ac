package io.actovisor.actors.memory;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.actors.balloon.BalloonActor;
import io.actovisor.actors.balloon.VirtioBalloonActor;
import io.actovisor.actors.device.DeviceIo;
import io.actovisor.actors.testing.NativeTestKit;
import io.actovisor.actors.vfio.IommuBackend;
import io.actovisor.actors.vfio.VfioContainerActor;
import io.actovisor.devices.balloon.VirtioBalloon;
import io.actovisor.devices.guest.scripted.RegisterBus;
import io.actovisor.devices.guest.scripted.ScriptedGuestException;
import io.actovisor.devices.guest.scripted.SplitQueueDriver;
import io.actovisor.devices.guest.scripted.VirtioMmioDriver;
import io.actovisor.devices.iommu.pinned.PinnedIommu;
import io.actovisor.kernel.uring.IoUring;
import io.actovisor.devices.virtio.VirtioMmio;
import io.actovisor.memory.GuestAddress;
import io.actovisor.memory.GuestMemory;
import io.actovisor.memory.GuestMemoryView;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.MemoryRegion;
import io.actovisor.memory.testing.NativeRequirement;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.javadsl.AskPattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * RAM hot-added by a commit after the devices were built is what those devices read: the address space publishes
 * a new guest-memory snapshot after the commit, and devices take the current one per request. A device built over
 * a snapshot taken before the commit (the old, frozen map) cannot reach it.
 */
class LiveGuestMemoryTest {
    private static final long PAGE = 4096;
    private static final long HIGH = 16L << 20;
    private static final Duration TIMEOUT = Duration.ofSeconds(10);
    @RegisterExtension
    static final NativeTestKit KIT = new NativeTestKit();

    private static AddressSpaceActor.CommitResult commit(ActorRef<AddressSpaceActor.Command> space,
            MemoryRegion region) {
        TestProbe<AddressSpaceActor.CommitResult> probe = KIT.kit().createTestProbe();
        space.tell(new AddressSpaceActor.Commit(List.of(new AddressSpaceActor.AddRegion(region)), probe.ref()));
        return probe.receiveMessage(TIMEOUT);
    }

    /** The driver's register accesses, as asks to the device actor (what a vCPU's MMIO exit does). */
    private static RegisterBus bus(ActorRef<DeviceIo.Command> device) {
        return new RegisterBus() {
            @Override
            public CompletionStage<Long> read(long offset, int size) {
                return AskPattern.<DeviceIo.Command, DeviceIo.Result>ask(device,
                        r -> new DeviceIo.Read(DeviceIo.Space.MMIO, offset, offset, size, r), TIMEOUT,
                        KIT.kit().scheduler()).thenApply(LiveGuestMemoryTest::value);
            }

            @Override
            public CompletionStage<Void> write(long offset, int size, long value) {
                return AskPattern.<DeviceIo.Command, DeviceIo.Result>ask(device,
                        r -> new DeviceIo.Write(DeviceIo.Space.MMIO, offset, offset, size, value, r), TIMEOUT,
                        KIT.kit().scheduler()).thenApply(r -> {
                            value(r);
                            return null;
                        });
            }
        };
    }

    private static long value(DeviceIo.Result result) {
        if (result instanceof DeviceIo.Failed failed) {
            throw new IllegalStateException(failed.reason());
        }
        return ((DeviceIo.Completed) result).value();
    }

    @Test
    void theBalloonDeviceReadsAQueueAndPfnsInRamHotAddedAfterItWasBuilt() throws Exception {
        try (HostMemory low = HostMemory.anonymous("live-low", 1 << 20);
                HostMemory high = HostMemory.anonymous("live-high", 1 << 20)) {
            GuestMemoryView view = GuestMemoryView.empty();
            ActorRef<AddressSpaceActor.Command> space = KIT.kit().spawn(AddressSpaceActor.create("live-balloon",
                    AddressSpaceActor.DEFAULT_ACK_TIMEOUT, view));
            assertInstanceOf(AddressSpaceActor.Committed.class,
                    commit(space, MemoryRegion.ram("low", GuestAddress.ZERO, low)));
            TestProbe<GuestMemoryView> published = KIT.kit().createTestProbe();
            space.tell(new AddressSpaceActor.GetGuestMemory(published.ref()));
            assertTrue(published.receiveMessage(TIMEOUT) == view, "the address space publishes into the given view");

            TestProbe<BalloonActor.Command> balloon = KIT.kit().createTestProbe();
            ActorRef<DeviceIo.Command> device = KIT.kit().spawn(VirtioBalloonActor.create(view, balloon.ref(), false,
                    Duration.ofHours(1)));
            balloon.expectMessageClass(BalloonActor.WatchTarget.class, TIMEOUT);
            GuestMemory before = view.current();
            assertFalse(before.isMemory(GuestAddress.of(HIGH), PAGE));

            // Hot-add: a commit after the device exists.
            assertInstanceOf(AddressSpaceActor.Committed.class,
                    commit(space, MemoryRegion.ram("hot", GuestAddress.of(HIGH), high)));
            assertTrue(view.current().isMemory(GuestAddress.of(HIGH), 1 << 20));

            // The driver puts both rings and the PFN buffer in the hot-added RAM.
            SplitQueueDriver inflate = new SplitQueueDriver(view, HIGH, 16);
            SplitQueueDriver deflate = new SplitQueueDriver(view, HIGH + PAGE, 16);
            VirtioMmioDriver transport = new VirtioMmioDriver("balloon", bus(device));
            transport.initialize(VirtioBalloon.DEVICE_ID, 0, List.of(inflate, deflate)).toCompletableFuture()
                    .get(10, TimeUnit.SECONDS);
            long buffer = HIGH + 2 * PAGE;
            long firstFrame = HIGH / PAGE + 8;
            view.current().writeInt(GuestAddress.of(buffer), (int) firstFrame);
            view.current().writeInt(GuestAddress.of(buffer + 4), (int) firstFrame + 1);
            int head = inflate.add(List.of(new SplitQueueDriver.Buffer(buffer, 8, false)));
            CompletableFuture<Void> notified = transport.notify(VirtioBalloon.INFLATE_QUEUE).toCompletableFuture();

            BalloonActor.Inflate request = balloon.expectMessageClass(BalloonActor.Inflate.class, TIMEOUT);
            assertArrayEquals(new long[] {firstFrame, firstFrame + 1}, request.frames(),
                    "the device read the PFNs the driver wrote into hot-added RAM");
            request.replyTo().tell(new BalloonActor.InflateResult(2, 0, 0, 0, List.of(), 0));
            notified.get(10, TimeUnit.SECONDS);
            assertEquals(head, inflate.pollUsed().orElseThrow().head(), "the device handed the chain back");

            // The same queue over the snapshot taken before the hot-add: the device cannot even see the rings.
            VirtioMmio frozen = new VirtioMmio("frozen", new VirtioBalloon(false), before);
            SplitQueueDriver again = new SplitQueueDriver(view, HIGH + 3 * PAGE, 16);
            VirtioMmioDriver frozenDriver = new VirtioMmioDriver("frozen", new RegisterBus() {
                @Override
                public CompletionStage<Long> read(long offset, int size) {
                    return CompletableFuture.completedFuture(frozen.read((int) offset, size));
                }

                @Override
                public CompletionStage<Void> write(long offset, int size, long value) {
                    frozen.write((int) offset, size, value);
                    return CompletableFuture.completedFuture(null);
                }
            });
            ExecutionException refused = assertThrows(ExecutionException.class, () -> frozenDriver.setUpQueue(0, again)
                    .toCompletableFuture().get(10, TimeUnit.SECONDS));
            assertInstanceOf(ScriptedGuestException.class, refused.getCause());
            assertTrue(frozen.failures() > 0, "the transport reported the rings outside its memory");
            assertTrue(frozen.queue(0).isEmpty(), "a map frozen before the hot-add does not hold the new RAM");
            KIT.kit().stop(device);
            KIT.kit().stop(space);
        }
    }

    @Test
    void deviceDmaThroughTheIommuReachesRamHotAddedAfterTheGroupAttached() {
        NativeRequirement.require("io_uring", IoUring.unavailabilityCause());
        try (HostMemory low = HostMemory.anonymous("live-dma-low", 1 << 20);
                HostMemory high = HostMemory.anonymous("live-dma-high", 1 << 20)) {
            GuestMemoryView view = GuestMemoryView.empty();
            ActorRef<AddressSpaceActor.Command> space = KIT.kit().spawn(AddressSpaceActor.create("live-dma",
                    AddressSpaceActor.DEFAULT_ACK_TIMEOUT, view));
            assertInstanceOf(AddressSpaceActor.Committed.class,
                    commit(space, MemoryRegion.ram("low", GuestAddress.ZERO, low)));
            ActorRef<VfioContainerActor.Command> container = KIT.kit().spawn(VfioContainerActor.create("c0", space,
                    IommuBackend.shared(PinnedIommu.BACKEND, PinnedIommu::open)));
            TestProbe<VfioContainerActor.AttachResult> attached = KIT.kit().createTestProbe();
            TestProbe<Object> group = KIT.kit().createTestProbe();
            container.tell(new VfioContainerActor.AttachGroup("g0", group.ref(), attached.ref()));
            attached.expectMessageClass(VfioContainerActor.GroupAttached.class, TIMEOUT);

            assertInstanceOf(AddressSpaceActor.Committed.class,
                    commit(space, MemoryRegion.ram("hot", GuestAddress.of(HIGH), high)));

            byte[] cpu = "written by the vCPU".getBytes(java.nio.charset.StandardCharsets.US_ASCII);
            view.current().write(GuestAddress.of(HIGH + 64), cpu);
            assertArrayEquals(cpu, DmaProbe.read(KIT.kit(), container, HIGH + 64, cpu.length, TIMEOUT),
                    "the device reads what the CPU wrote into hot-added RAM");
            byte[] device = "written by the device".getBytes(java.nio.charset.StandardCharsets.US_ASCII);
            DmaProbe.write(KIT.kit(), container, HIGH + 8192, device, TIMEOUT);
            assertArrayEquals(device, view.current().read(GuestAddress.of(HIGH + 8192), device.length),
                    "the CPU reads what the device wrote into hot-added RAM");
            KIT.kit().stop(container);
            KIT.kit().stop(space);
        }
    }
}
