package io.actovisor.devices.guest.scripted;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.devices.balloon.VirtioBalloon;
import io.actovisor.devices.virtio.VirtioMmio;
import io.actovisor.devices.virtio.Virtqueue;
import io.actovisor.memory.FlatView;
import io.actovisor.memory.GuestAddress;
import io.actovisor.memory.GuestMemory;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.MemoryRegion;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CompletionStage;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The scripted guest's drivers against the device models directly (a register bus that calls {@link VirtioMmio}
 * synchronously): the handshake leaves the device live with the driver's rings; a chain the driver offers is the
 * chain the device pops, and what the device pushes is what the driver polls.
 */
class ScriptedDriverTest {
    private static final long RAM = 2 << 20;

    private HostMemory host;
    private GuestMemory memory;
    private VirtioMmio mmio;
    private RegisterBus bus;

    @BeforeEach
    void setUp() {
        host = HostMemory.anonymous("scripted-driver-test", RAM);
        memory = GuestMemory.of(FlatView.of(List.of(MemoryRegion.ram("ram", GuestAddress.ZERO, host))));
        mmio = new VirtioMmio("test-balloon", new VirtioBalloon(true), memory);
        bus = new RegisterBus() {
            @Override
            public CompletionStage<Long> read(long offset, int size) {
                return CompletableFuture.completedFuture(mmio.read((int) offset, size));
            }

            @Override
            public CompletionStage<Void> write(long offset, int size, long value) {
                mmio.write((int) offset, size, value);
                return CompletableFuture.completedFuture(null);
            }
        };
    }

    @AfterEach
    void tearDown() {
        host.close();
    }

    private static <T> T done(CompletionStage<T> stage) {
        return stage.toCompletableFuture().join();
    }

    @Test
    void handshakeNegotiatesOfferedFeaturesAndMakesQueuesLive() {
        VirtioMmioDriver driver = new VirtioMmioDriver("balloon", bus);
        SplitQueueDriver q0 = new SplitQueueDriver(memory, GuestLayout.queue(0, 0), 16);
        SplitQueueDriver q1 = new SplitQueueDriver(memory, GuestLayout.queue(0, 1), 16);
        // The driver wants a feature the device does not offer (bit 7): negotiation must drop it.
        long accepted = done(driver.initialize(VirtioBalloon.DEVICE_ID, VirtioBalloon.F_STATS_VQ | 1L << 7,
                List.of(q0, q1)));
        assertEquals(VirtioBalloon.F_STATS_VQ | VirtioMmio.F_VERSION_1, accepted);
        assertEquals(accepted, mmio.negotiatedFeatures());
        assertTrue(mmio.live(), "status " + mmio.status());
        assertTrue(mmio.queue(0).isPresent() && mmio.queue(1).isPresent());
        assertTrue(mmio.queue(2).isEmpty(), "the driver set up two queues");
    }

    @Test
    void aWrongDeviceIdIsRefusedWithTheReason() {
        VirtioMmioDriver driver = new VirtioMmioDriver("balloon", bus);
        CompletionException e = assertThrows(CompletionException.class,
                () -> done(driver.initialize(2, 0, List.of())));
        assertEquals("balloon: device ID 5, expected 2", e.getCause().getMessage());
    }

    @Test
    void chainsRoundTripThroughTheDevicesQueue() {
        VirtioMmioDriver driver = new VirtioMmioDriver("balloon", bus);
        SplitQueueDriver q0 = new SplitQueueDriver(memory, GuestLayout.queue(0, 0), 8);
        done(driver.initialize(VirtioBalloon.DEVICE_ID, 0, List.of(q0)));
        int head = q0.add(List.of(new SplitQueueDriver.Buffer(0x100000, 64, false),
                new SplitQueueDriver.Buffer(0x101000, 32, true)));
        assertEquals(6, q0.freeDescriptors());
        Virtqueue device = mmio.queue(0).orElseThrow();
        Virtqueue.Chain chain = device.pop(memory).orElseThrow();
        assertEquals(head, chain.head());
        assertEquals(List.of(new Virtqueue.Descriptor(0x100000, 64, false),
                new Virtqueue.Descriptor(0x101000, 32, true)), chain.descriptors());
        assertTrue(device.pop(memory).isEmpty());
        assertTrue(q0.pollUsed().isEmpty(), "nothing handed back yet");
        device.push(memory, head, 32);
        assertEquals(new SplitQueueDriver.Used(head, 32), q0.pollUsed().orElseThrow());
        assertEquals(8, q0.freeDescriptors(), "the chain's descriptors are free again");
    }

    @Test
    void balloonDriverWritesFrameNumbersTheDeviceReads() {
        BalloonDriver balloon = new BalloonDriver(memory, bus, 0);
        done(balloon.transport().initialize(VirtioBalloon.DEVICE_ID, VirtioBalloon.F_DEFLATE_ON_OOM,
                List.of(new SplitQueueDriver(memory, GuestLayout.queue(1, 0), 8))));
        assertTrue(mmio.live());
        assertFalse(balloon.hasStatistics());
        // Writing actual goes to config space, where the device reads it.
        done(balloon.setActual(7));
        assertEquals(7, mmio.read(VirtioMmio.CONFIG + VirtioBalloon.CONFIG_ACTUAL, 4));
    }

    @Test
    void queuePageMustBeGuestRam() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> new SplitQueueDriver(memory, RAM, 8));
        assertEquals("queue page 0x200000 is not an aligned page of guest RAM", e.getMessage());
    }
}
