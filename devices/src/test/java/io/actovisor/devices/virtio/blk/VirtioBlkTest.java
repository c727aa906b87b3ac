package io.actovisor.devices.virtio.blk;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.devices.virtio.VirtioException;
import io.actovisor.devices.virtio.VirtioMmio;
import io.actovisor.devices.virtio.Virtqueue;
import io.actovisor.kernel.testing.CProbe;
import io.actovisor.memory.FlatView;
import io.actovisor.memory.GuestAddress;
import io.actovisor.memory.GuestMemory;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.MemoryRegion;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The virtio-blk device driven by a small driver written here (queue in guest RAM behind {@link VirtioMmio}): writes
 * and reads of sectors, GET_ID, FLUSH, and bad requests, which complete with IOERR or UNSUPP (or, without a status
 * byte, put the device in DEVICE_NEEDS_RESET) instead of throwing.
 */
class VirtioBlkTest {
    private static final long RAM = 1 << 20;
    private static final long QUEUE = 0x10000;
    private static final int SIZE = 8;
    private static final long HDR = 0x20000;
    private static final long DATA = 0x30000;
    private static final long STATUS = 0x40000;
    private static final long DISK = 64 * 1024;

    private HostMemory host;
    private GuestMemory memory;
    private VirtioBlk blk;
    private VirtioMmio mmio;
    private int available;

    @BeforeEach
    void setUp() {
        host = HostMemory.anonymous("virtio-blk-test", RAM);
        memory = GuestMemory.of(FlatView.of(List.of(MemoryRegion.ram("ram", GuestAddress.ZERO, host))));
        blk = new VirtioBlk("actovisor-blk0", DISK);
        mmio = new VirtioMmio("test-blk", blk, memory);
        mmio.write(VirtioMmio.STATUS, 4, 0);
        mmio.write(VirtioMmio.STATUS, 4, VirtioMmio.S_ACKNOWLEDGE | VirtioMmio.S_DRIVER);
        mmio.write(VirtioMmio.DRIVER_FEATURES_SEL, 4, 0);
        mmio.write(VirtioMmio.DRIVER_FEATURES, 4, VirtioBlk.F_FLUSH);
        mmio.write(VirtioMmio.DRIVER_FEATURES_SEL, 4, 1);
        mmio.write(VirtioMmio.DRIVER_FEATURES, 4, 1);
        mmio.write(VirtioMmio.STATUS, 4, VirtioMmio.S_ACKNOWLEDGE | VirtioMmio.S_DRIVER | VirtioMmio.S_FEATURES_OK);
        mmio.write(VirtioMmio.QUEUE_SEL, 4, 0);
        mmio.write(VirtioMmio.QUEUE_NUM, 4, SIZE);
        mmio.write(VirtioMmio.QUEUE_DESC_LOW, 4, QUEUE);
        mmio.write(VirtioMmio.QUEUE_DRIVER_LOW, 4, QUEUE + 0x100);
        mmio.write(VirtioMmio.QUEUE_DEVICE_LOW, 4, QUEUE + 0x400);
        mmio.write(VirtioMmio.QUEUE_READY, 4, 1);
        mmio.write(VirtioMmio.STATUS, 4, VirtioMmio.S_ACKNOWLEDGE | VirtioMmio.S_DRIVER | VirtioMmio.S_FEATURES_OK
                | VirtioMmio.S_DRIVER_OK);
        assertTrue(mmio.live());
    }

    @AfterEach
    void tearDown() {
        host.close();
    }

    /** One descriptor: address, length, device-writable. */
    private record D(long address, int length, boolean writes) {
    }

    /** Offer a chain of descriptors (slots 0..n-1) and pop it as the device does. */
    private Virtqueue.Chain offer(D... chain) {
        for (int i = 0; i < chain.length; i++) {
            long d = QUEUE + 16L * i;
            memory.writeLong(new GuestAddress(d), chain[i].address());
            memory.writeInt(new GuestAddress(d + 8), chain[i].length());
            int flags = (chain[i].writes() ? Virtqueue.F_WRITE : 0) | (i + 1 < chain.length ? Virtqueue.F_NEXT : 0);
            memory.writeShort(new GuestAddress(d + 12), (short) flags);
            memory.writeShort(new GuestAddress(d + 14), (short) (i + 1));
        }
        available++;
        memory.writeShort(new GuestAddress(QUEUE + 0x100 + 4 + 2L * ((available - 1) % SIZE)), (short) 0);
        memory.writeShort(new GuestAddress(QUEUE + 0x100 + 2), (short) available);
        assertEquals(java.util.Optional.of(0), mmio.write(VirtioMmio.QUEUE_NOTIFY, 4, 0));
        return mmio.queue(0).orElseThrow().pop(memory).orElseThrow();
    }

    private void header(int type, long sector) {
        memory.write(new GuestAddress(HDR), ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN).putInt(type)
                .putInt(0).putLong(sector).array());
    }

    private int status() {
        return memory.readByte(new GuestAddress(STATUS)) & 0xff;
    }

    private static byte[] pattern(int length, int seed) {
        byte[] b = new byte[length];
        for (int i = 0; i < length; i++) {
            b[i] = (byte) (i * 31 + seed);
        }
        return b;
    }

    @Test
    void theDeviceIsABlockDeviceWithItsCapacityInConfigSpace() {
        assertEquals(VirtioBlk.DEVICE_ID, mmio.read(VirtioMmio.DEVICE_ID, 4));
        assertEquals(DISK / 512, mmio.read(VirtioMmio.CONFIG + VirtioBlk.CONFIG_CAPACITY, 4));
        assertEquals(0, mmio.read(VirtioMmio.CONFIG + 4, 4));
        assertEquals(DISK / 512, mmio.read(VirtioMmio.CONFIG, 8));
        mmio.write(VirtioMmio.DEVICE_FEATURES_SEL, 4, 0);
        assertEquals(VirtioBlk.F_FLUSH, mmio.read(VirtioMmio.DEVICE_FEATURES, 4));
    }

    @Test
    void whatIsWrittenIsReadBackFromTheSameSectorsAcrossBuffers() {
        byte[] data = pattern(3 * 512, 7);
        memory.write(new GuestAddress(DATA), data);
        header(VirtioBlk.T_OUT, 5);
        VirtioBlk.Completion out = blk.process(memory, offer(new D(HDR, 16, false), new D(DATA, 1024, false),
                new D(DATA + 1024, 512, false), new D(STATUS, 1, true)));
        assertEquals(VirtioBlk.S_OK, out.status());
        assertEquals(VirtioBlk.S_OK, status());
        assertEquals(1, out.usedLength());
        assertEquals(List.of(new Virtqueue.Descriptor(DATA, 1024, false),
                new Virtqueue.Descriptor(DATA + 1024, 512, false)), out.dataBuffers());

        memory.write(new GuestAddress(STATUS), new byte[] {(byte) 0xff});
        header(VirtioBlk.T_IN, 5);
        long back = DATA + 0x8000;
        VirtioBlk.Completion in = blk.process(memory, offer(new D(HDR, 16, false), new D(back, 512, true),
                new D(back + 512, 1024, true), new D(STATUS, 1, true)));
        assertEquals(VirtioBlk.S_OK, status());
        assertEquals(3 * 512 + 1, in.usedLength());
        assertArrayEquals(data, memory.read(new GuestAddress(back), 3 * 512));

        header(VirtioBlk.T_IN, 4);
        blk.process(memory, offer(new D(HDR, 16, false), new D(back, 512, true), new D(STATUS, 1, true)));
        assertArrayEquals(new byte[512], memory.read(new GuestAddress(back), 512), "sector 4 was never written");
    }

    @Test
    void theHeaderMayShareADescriptorWithTheDataAndTheStatusWithTheLastBuffer() {
        byte[] data = pattern(512, 3);
        header(VirtioBlk.T_OUT, 0);
        memory.write(new GuestAddress(HDR + 16), data);
        assertEquals(VirtioBlk.S_OK, blk.process(memory, offer(new D(HDR, 16 + 512, false),
                new D(STATUS, 1, true))).status());
        header(VirtioBlk.T_IN, 0);
        VirtioBlk.Completion in = blk.process(memory, offer(new D(HDR, 16, false), new D(DATA, 513, true)));
        assertEquals(VirtioBlk.S_OK, in.status());
        assertEquals(VirtioBlk.S_OK, memory.readByte(new GuestAddress(DATA + 512)));
        assertArrayEquals(data, memory.read(new GuestAddress(DATA), 512));
    }

    @Test
    void getIdAndFlushAnswerAndAnUnknownTypeIsUnsupported() {
        header(VirtioBlk.T_GET_ID, 0);
        VirtioBlk.Completion id = blk.process(memory, offer(new D(HDR, 16, false), new D(DATA, 20, true),
                new D(STATUS, 1, true)));
        assertEquals(VirtioBlk.S_OK, status());
        assertEquals("actovisor-blk0", new String(memory.read(new GuestAddress(DATA), 14)));
        assertEquals(21, id.usedLength());
        header(VirtioBlk.T_FLUSH, 0);
        blk.process(memory, offer(new D(HDR, 16, false), new D(STATUS, 1, true)));
        assertEquals(VirtioBlk.S_OK, status());
        header(11, 0); // VIRTIO_BLK_T_DISCARD, not offered
        blk.process(memory, offer(new D(HDR, 16, false), new D(STATUS, 1, true)));
        assertEquals(VirtioBlk.S_UNSUPP, status());
    }

    @Test
    void badRequestsCompleteWithIoErrorAndLeaveTheDiskAlone() {
        memory.write(new GuestAddress(DATA), pattern(1024, 1));
        // past the end: the last sector is DISK / 512 - 1
        header(VirtioBlk.T_OUT, DISK / 512 - 1);
        assertEquals(VirtioBlk.S_IOERR, blk.process(memory, offer(new D(HDR, 16, false), new D(DATA, 1024, false),
                new D(STATUS, 1, true))).status());
        header(VirtioBlk.T_IN, Long.MAX_VALUE / 256);
        assertEquals(VirtioBlk.S_IOERR, blk.process(memory, offer(new D(HDR, 16, false), new D(DATA, 512, true),
                new D(STATUS, 1, true))).status());
        // not whole sectors
        header(VirtioBlk.T_OUT, 0);
        assertEquals(VirtioBlk.S_IOERR, blk.process(memory, offer(new D(HDR, 16, false), new D(DATA, 100, false),
                new D(STATUS, 1, true))).status());
        // an IN whose data buffer the device may not write
        header(VirtioBlk.T_IN, 0);
        assertEquals(VirtioBlk.S_IOERR, blk.process(memory, offer(new D(HDR, 16, false), new D(DATA, 512, false),
                new D(STATUS, 1, true))).status());
        // a header too short
        assertEquals(VirtioBlk.S_IOERR, blk.process(memory, offer(new D(HDR, 8, false),
                new D(STATUS, 1, true))).status());
        // GET_ID with nowhere to put it
        header(VirtioBlk.T_GET_ID, 0);
        assertEquals(VirtioBlk.S_IOERR, blk.process(memory, offer(new D(HDR, 16, false),
                new D(STATUS, 1, true))).status());
        header(VirtioBlk.T_IN, DISK / 512 - 1);
        blk.process(memory, offer(new D(HDR, 16, false), new D(DATA, 512, true), new D(STATUS, 1, true)));
        assertEquals(VirtioBlk.S_OK, status());
        assertArrayEquals(new byte[512], memory.read(new GuestAddress(DATA), 512), "no failed write reached the disk");
        assertFalse(mmio.failures() > 0);
    }

    @Test
    void aChainWithoutAStatusByteCannotBeAnsweredAndNeedsAReset() {
        header(VirtioBlk.T_IN, 0);
        Virtqueue.Chain chain = offer(new D(HDR, 16, false), new D(DATA, 512, false));
        VirtioException e = assertThrows(VirtioException.class, () -> blk.process(memory, chain));
        assertTrue(e.getMessage().contains("status byte"), e.getMessage());
        mmio.fail(e.getMessage());
        assertTrue((mmio.status() & VirtioMmio.S_DEVICE_NEEDS_RESET) != 0);
    }

    @Test
    void aDiskIsWholeSectors() {
        assertThrows(IllegalArgumentException.class, () -> new VirtioBlk("x", 1000));
        assertThrows(IllegalArgumentException.class, () -> new VirtioBlk("x", 0));
        assertThrows(IllegalArgumentException.class, () -> new VirtioBlk("x", VirtioBlk.MAX_BYTES + 512));
    }

    @Test
    void theLayoutsMatchLinuxVirtioBlkHeader(@TempDir Path dir) throws Exception {
        Path header = Path.of("/usr/include/linux/virtio_blk.h");
        CProbe.require(header);
        Map<String, Long> expected = new TreeMap<>(Map.ofEntries(
                Map.entry("VIRTIO_ID_BLOCK", (long) VirtioBlk.DEVICE_ID),
                Map.entry("VIRTIO_BLK_F_FLUSH", (long) Long.numberOfTrailingZeros(VirtioBlk.F_FLUSH)),
                Map.entry("VIRTIO_BLK_T_IN", (long) VirtioBlk.T_IN),
                Map.entry("VIRTIO_BLK_T_OUT", (long) VirtioBlk.T_OUT),
                Map.entry("VIRTIO_BLK_T_FLUSH", (long) VirtioBlk.T_FLUSH),
                Map.entry("VIRTIO_BLK_T_GET_ID", (long) VirtioBlk.T_GET_ID),
                Map.entry("VIRTIO_BLK_S_OK", (long) VirtioBlk.S_OK),
                Map.entry("VIRTIO_BLK_S_IOERR", (long) VirtioBlk.S_IOERR),
                Map.entry("VIRTIO_BLK_S_UNSUPP", (long) VirtioBlk.S_UNSUPP),
                Map.entry("VIRTIO_BLK_ID_BYTES", (long) VirtioBlk.ID_BYTES),
                Map.entry("sizeof(struct virtio_blk_outhdr)", (long) VirtioBlk.HEADER),
                Map.entry("offsetof(struct virtio_blk_outhdr, type)", 0L),
                Map.entry("offsetof(struct virtio_blk_outhdr, sector)", 8L),
                Map.entry("offsetof(struct virtio_blk_config, capacity)", (long) VirtioBlk.CONFIG_CAPACITY)));
        StringBuilder c = new StringBuilder("#include <stddef.h>\n#include <stdio.h>\n#include <linux/virtio_ids.h>\n"
                + "#include <linux/virtio_blk.h>\nint main(void) {\n");
        List<String> names = List.copyOf(expected.keySet());
        for (int i = 0; i < names.size(); i++) {
            c.append("  printf(\"%d %llu\\n\", ").append(i).append(", (unsigned long long)(").append(names.get(i))
                    .append("));\n");
        }
        c.append("  return 0;\n}\n");
        Map<String, Long> actual = new TreeMap<>();
        for (String line : CProbe.output(c.toString(), "virtio_blk_probe", dir).strip().split("\n")) {
            String[] parts = line.split(" ");
            actual.put(names.get(Integer.parseInt(parts[0])), Long.parseUnsignedLong(parts[1]));
        }
        assertEquals(expected, actual);
    }
}
