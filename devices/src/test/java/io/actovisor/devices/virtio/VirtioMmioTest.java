package io.actovisor.devices.virtio;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.devices.balloon.BalloonStatistics;
import io.actovisor.devices.balloon.VirtioBalloon;
import io.actovisor.memory.FlatView;
import io.actovisor.memory.GuestAddress;
import io.actovisor.memory.GuestMemory;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.MemoryRegion;
import java.util.List;
import java.util.Optional;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The transport and the balloon device driven by a small driver written here, as the firmware drives them; and
 * malformed driver input, which must put the device in DEVICE_NEEDS_RESET instead of throwing.
 */
class VirtioMmioTest {
    private static final long RAM = 1 << 20;
    private static final long QUEUE = 0x10000;
    private static final int SIZE = 8;

    private HostMemory host;
    private GuestMemory memory;
    private VirtioBalloon balloon;
    private VirtioMmio mmio;

    @BeforeEach
    void setUp() {
        host = HostMemory.anonymous("virtio-test", RAM);
        memory = GuestMemory.of(FlatView.of(List.of(MemoryRegion.ram("ram", GuestAddress.ZERO, host))));
        balloon = new VirtioBalloon(true);
        mmio = new VirtioMmio("test-balloon", balloon, memory);
    }

    @AfterEach
    void tearDown() {
        host.close();
    }

    private void write(int register, long value) {
        mmio.write(register, 4, value);
    }

    private long read(int register) {
        return mmio.read(register, 4);
    }

    /** The firmware's driver sequence, up to DRIVER_OK, with every queue at {@code QUEUE + 0x1000 * index}. */
    private void bringUp() {
        assertEquals(VirtioMmio.MAGIC, read(VirtioMmio.MAGIC_VALUE));
        assertEquals(2, read(VirtioMmio.VERSION));
        assertEquals(VirtioBalloon.DEVICE_ID, read(VirtioMmio.DEVICE_ID));
        write(VirtioMmio.STATUS, 0);
        write(VirtioMmio.STATUS, VirtioMmio.S_ACKNOWLEDGE | VirtioMmio.S_DRIVER);
        write(VirtioMmio.DEVICE_FEATURES_SEL, 1);
        assertEquals(1, read(VirtioMmio.DEVICE_FEATURES) & 1, "VERSION_1 offered");
        write(VirtioMmio.DRIVER_FEATURES_SEL, 0);
        write(VirtioMmio.DRIVER_FEATURES, VirtioBalloon.F_STATS_VQ);
        write(VirtioMmio.DRIVER_FEATURES_SEL, 1);
        write(VirtioMmio.DRIVER_FEATURES, 1);
        write(VirtioMmio.STATUS, VirtioMmio.S_ACKNOWLEDGE | VirtioMmio.S_DRIVER | VirtioMmio.S_FEATURES_OK);
        assertTrue((read(VirtioMmio.STATUS) & VirtioMmio.S_FEATURES_OK) != 0);
        for (int q = 0; q < 3; q++) {
            long area = QUEUE + 0x1000L * q;
            write(VirtioMmio.QUEUE_SEL, q);
            write(VirtioMmio.QUEUE_NUM, SIZE);
            write(VirtioMmio.QUEUE_DESC_LOW, area);
            write(VirtioMmio.QUEUE_DRIVER_LOW, area + 0x100);
            write(VirtioMmio.QUEUE_DEVICE_LOW, area + 0x400);
            write(VirtioMmio.QUEUE_READY, 1);
            assertEquals(1, read(VirtioMmio.QUEUE_READY));
        }
        write(VirtioMmio.STATUS, VirtioMmio.S_ACKNOWLEDGE | VirtioMmio.S_DRIVER | VirtioMmio.S_FEATURES_OK
                | VirtioMmio.S_DRIVER_OK);
        assertTrue(mmio.live());
    }

    /** Put descriptor {@code slot} (flags, next) in queue {@code q} and make it available. */
    private void offer(int q, int slot, long address, int length, int flags, int next, int availableIndex) {
        long area = QUEUE + 0x1000L * q;
        long d = area + 16L * slot;
        memory.writeLong(new GuestAddress(d), address);
        memory.writeInt(new GuestAddress(d + 8), length);
        memory.writeShort(new GuestAddress(d + 12), (short) flags);
        memory.writeShort(new GuestAddress(d + 14), (short) next);
        memory.writeShort(new GuestAddress(area + 0x100 + 4 + 2L * ((availableIndex - 1) % SIZE)), (short) slot);
        memory.writeShort(new GuestAddress(area + 0x100 + 2), (short) availableIndex);
    }

    @Test
    void aDriverNegotiatesAndTheDeviceReadsInflatedFramesAndStatistics() {
        bringUp();
        long pfns = 0x20000;
        for (int i = 0; i < 4; i++) {
            memory.writeInt(new GuestAddress(pfns + 4L * i), 100 + i);
        }
        offer(VirtioBalloon.INFLATE_QUEUE, 0, pfns, 16, 0, 0, 1);
        assertEquals(Optional.of(VirtioBalloon.INFLATE_QUEUE), mmio.write(VirtioMmio.QUEUE_NOTIFY, 4, 0));
        Virtqueue q = mmio.queue(0).orElseThrow();
        Virtqueue.Chain chain = q.pop(memory).orElseThrow();
        assertArrayEquals(new long[] {100, 101, 102, 103},
                VirtioBalloon.frames(memory.read(new GuestAddress(pfns), chain.readableBytes())));
        q.push(memory, chain.head(), 0);
        assertEquals(1, memory.readShort(new GuestAddress(QUEUE + 0x400 + 2)), "used index advanced");

        long stats = 0x21000;
        java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(20).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        b.putShort((short) 4).putLong(123456).putShort((short) 5).putLong(654321);
        memory.write(new GuestAddress(stats), b.array());
        offer(VirtioBalloon.STATS_QUEUE, 0, stats, 20, 0, 0, 1);
        Virtqueue.Chain statsChain = mmio.queue(2).orElseThrow().pop(memory).orElseThrow();
        BalloonStatistics parsed = BalloonStatistics.parse(memory.read(new GuestAddress(stats), 20));
        assertEquals(0, statsChain.head());
        assertEquals(123456L, parsed.values().get("free_memory"));
        assertEquals(654321L, parsed.values().get("total_memory"));
    }

    @Test
    void theTargetIsInConfigSpaceAndAChangeRaisesAConfigInterrupt() {
        bringUp();
        assertTrue(balloon.setTargetPages(256));
        mmio.configChanged();
        assertEquals(256, mmio.read(VirtioMmio.CONFIG + VirtioBalloon.CONFIG_NUM_PAGES, 4));
        assertEquals(VirtioMmio.INT_CONFIG_CHANGE, read(VirtioMmio.INTERRUPT_STATUS) & VirtioMmio.INT_CONFIG_CHANGE);
        assertEquals(1, read(VirtioMmio.CONFIG_GENERATION));
        write(VirtioMmio.INTERRUPT_ACK, VirtioMmio.INT_CONFIG_CHANGE);
        assertEquals(0, read(VirtioMmio.INTERRUPT_STATUS));
        mmio.write(VirtioMmio.CONFIG + VirtioBalloon.CONFIG_ACTUAL, 4, 200);
        assertEquals(200, balloon.actualPages());
        write(VirtioMmio.STATUS, 0);
        assertEquals(0, read(VirtioMmio.STATUS), "a reset clears the status");
        assertEquals(0, read(VirtioMmio.QUEUE_READY));
    }

    private void assertNeedsReset(String reasonPart) {
        assertTrue((mmio.status() & VirtioMmio.S_DEVICE_NEEDS_RESET) != 0, "status " + mmio.status());
        assertTrue(mmio.lastFailure().contains(reasonPart), mmio.lastFailure());
        assertTrue(mmio.failures() > 0);
    }

    @Test
    void aDriverWithoutVersion1IsRefused() {
        write(VirtioMmio.STATUS, VirtioMmio.S_ACKNOWLEDGE | VirtioMmio.S_DRIVER);
        write(VirtioMmio.DRIVER_FEATURES, VirtioBalloon.F_STATS_VQ);
        write(VirtioMmio.STATUS, VirtioMmio.S_ACKNOWLEDGE | VirtioMmio.S_DRIVER | VirtioMmio.S_FEATURES_OK);
        assertEquals(0, read(VirtioMmio.STATUS) & VirtioMmio.S_FEATURES_OK);
        assertNeedsReset("VERSION_1");
    }

    @Test
    void notifyBeforeDriverOkIsRefused() {
        mmio.write(VirtioMmio.QUEUE_NOTIFY, 4, 0);
        assertNeedsReset("before DRIVER_OK");
    }

    @Test
    void queuesOutsideRamOrOfImpossibleSizeAreRefused() {
        write(VirtioMmio.QUEUE_SEL, 0);
        write(VirtioMmio.QUEUE_NUM, 6);
        write(VirtioMmio.QUEUE_DESC_LOW, QUEUE);
        write(VirtioMmio.QUEUE_DRIVER_LOW, QUEUE + 0x100);
        write(VirtioMmio.QUEUE_DEVICE_LOW, QUEUE + 0x400);
        write(VirtioMmio.QUEUE_READY, 1);
        assertNeedsReset("power of two");
        setUp();
        write(VirtioMmio.QUEUE_SEL, 1);
        write(VirtioMmio.QUEUE_NUM, 8);
        write(VirtioMmio.QUEUE_DESC_LOW, RAM + 0x1000);
        write(VirtioMmio.QUEUE_READY, 1);
        assertNeedsReset("not in guest RAM");
        assertEquals(0, read(VirtioMmio.QUEUE_READY));
    }

    @Test
    void descriptorLoopsOutOfRangeBuffersAndIndexJumpsAreCaught() {
        bringUp();
        Virtqueue q = mmio.queue(0).orElseThrow();
        offer(0, 0, 0x20000, 4, Virtqueue.F_NEXT, 1, 1);
        offer(0, 1, 0x20000, 4, Virtqueue.F_NEXT, 0, 1);
        VirtioException loop = org.junit.jupiter.api.Assertions.assertThrows(VirtioException.class,
                () -> q.pop(memory));
        assertTrue(loop.getMessage().contains("descriptor loop"), loop.getMessage());
        offer(0, 2, RAM - 2, 16, 0, 0, 2);
        VirtioException outside = org.junit.jupiter.api.Assertions.assertThrows(VirtioException.class,
                () -> q.pop(memory));
        assertTrue(outside.getMessage().contains("not in guest RAM"), outside.getMessage());
        memory.writeShort(new GuestAddress(QUEUE + 0x100 + 2), (short) 200);
        VirtioException jump = org.junit.jupiter.api.Assertions.assertThrows(VirtioException.class,
                () -> q.pop(memory));
        assertTrue(jump.getMessage().contains("jumped"), jump.getMessage());
    }
}
