package io.actovisor.actors.balloon;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.actors.device.DeviceIo;
import io.actovisor.actors.discard.DiscardManager;
import io.actovisor.actors.testing.NativeTestKit;
import io.actovisor.devices.balloon.VirtioBalloon;
import io.actovisor.devices.virtio.VirtioMmio;
import io.actovisor.memory.FlatView;
import io.actovisor.memory.GuestAddress;
import io.actovisor.memory.GuestMemory;
import io.actovisor.memory.GuestMemoryView;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.MemoryRegion;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/** The virtio-balloon device tells the discard manager the guest's contract, and remaps before the driver goes on. */
class VirtioBalloonActorTest {
    @RegisterExtension
    static final NativeTestKit KIT = new NativeTestKit();

    private static void write(ActorRef<DeviceIo.Command> device, int offset, long value,
            TestProbe<DeviceIo.Result> replies) {
        device.tell(new DeviceIo.Write(DeviceIo.Space.MMIO, offset, offset, 4, value, replies.ref()));
    }

    @Test
    void featuresOkAndResetMapEveryDiscardedBlockAgainBeforeTheStatusWriteCompletes() {
        try (HostMemory ram = HostMemory.anonymous("virtio-balloon-ram", 1 << 20)) {
            GuestMemory memory = GuestMemory.of(FlatView.of(List.of(MemoryRegion.ram("ram", GuestAddress.ZERO,
                    ram))));
            TestProbe<BalloonActor.Command> balloon = KIT.kit().createTestProbe();
            TestProbe<DiscardManager.Command> manager = KIT.kit().createTestProbe();
            ActorRef<DeviceIo.Command> device = KIT.kit().spawn(VirtioBalloonActor.create(GuestMemoryView.of(memory),
                    balloon.ref(), Optional.of(manager.ref()), true, Duration.ofHours(1)));
            TestProbe<DeviceIo.Result> replies = KIT.kit().createTestProbe();
            write(device, VirtioMmio.STATUS, VirtioMmio.S_ACKNOWLEDGE | VirtioMmio.S_DRIVER, replies);
            replies.receiveMessage();
            write(device, VirtioMmio.DRIVER_FEATURES_SEL, 0, replies);
            write(device, VirtioMmio.DRIVER_FEATURES, VirtioBalloon.F_MUST_TELL_HOST | VirtioBalloon.F_STATS_VQ,
                    replies);
            write(device, VirtioMmio.DRIVER_FEATURES_SEL, 1, replies);
            write(device, VirtioMmio.DRIVER_FEATURES, 1, replies); // VIRTIO_F_VERSION_1 (bit 32)
            replies.receiveSeveralMessages(4);
            write(device, VirtioMmio.STATUS, VirtioMmio.S_ACKNOWLEDGE | VirtioMmio.S_DRIVER
                    | VirtioMmio.S_FEATURES_OK, replies);
            assertEquals(new DiscardManager.SetGuestContract(true),
                    manager.expectMessageClass(DiscardManager.SetGuestContract.class));
            DiscardManager.RestoreAll restore = manager.expectMessageClass(DiscardManager.RestoreAll.class);
            replies.expectNoMessage(Duration.ofMillis(100));
            restore.replyTo().tell(new DiscardManager.Reclaimed(0));
            assertEquals(new DeviceIo.Completed(0), replies.receiveMessage());

            write(device, VirtioMmio.STATUS, 0, replies); // a reset in the middle of a coordinated balloon
            assertEquals(new DiscardManager.SetGuestContract(false),
                    manager.expectMessageClass(DiscardManager.SetGuestContract.class));
            restore = manager.expectMessageClass(DiscardManager.RestoreAll.class);
            replies.expectNoMessage(Duration.ofMillis(100));
            restore.replyTo().tell(new DiscardManager.Reclaimed(3));
            assertEquals(new DeviceIo.Completed(0), replies.receiveMessage());

            // A remap that fails leaves the device needing a reset: the driver cannot go on.
            write(device, VirtioMmio.STATUS, VirtioMmio.S_ACKNOWLEDGE | VirtioMmio.S_DRIVER, replies);
            replies.receiveMessage();
            write(device, VirtioMmio.DRIVER_FEATURES_SEL, 1, replies);
            write(device, VirtioMmio.DRIVER_FEATURES, 1, replies);
            replies.receiveSeveralMessages(2);
            write(device, VirtioMmio.STATUS, VirtioMmio.S_ACKNOWLEDGE | VirtioMmio.S_DRIVER
                    | VirtioMmio.S_FEATURES_OK, replies);
            assertEquals(new DiscardManager.SetGuestContract(false),
                    manager.expectMessageClass(DiscardManager.SetGuestContract.class), "no MUST_TELL_HOST this time");
            manager.expectMessageClass(DiscardManager.RestoreAll.class).replyTo()
                    .tell(new DiscardManager.ReclaimFailed("ENOMEM"));
            replies.receiveMessage();
            TestProbe<DeviceIo.Result> status = KIT.kit().createTestProbe();
            device.tell(new DeviceIo.Read(DeviceIo.Space.MMIO, VirtioMmio.STATUS, VirtioMmio.STATUS, 4,
                    status.ref()));
            long value = ((DeviceIo.Completed) status.receiveMessage()).value();
            assertTrue((value & VirtioMmio.S_DEVICE_NEEDS_RESET) != 0, "status " + value);
            KIT.kit().stop(device);
        }
    }
}
