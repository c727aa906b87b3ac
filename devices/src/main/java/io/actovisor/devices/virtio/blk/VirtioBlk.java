package io.actovisor.devices.virtio.blk;

import io.actovisor.devices.virtio.VirtioDevice;
import io.actovisor.devices.virtio.VirtioException;
import io.actovisor.devices.virtio.Virtqueue;
import io.actovisor.memory.GuestAddress;
import io.actovisor.memory.GuestMemory;
import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * The virtio-blk device (ID 2) over a RAM disk the device owns: config space {@code capacity} (512-byte sectors),
 * one request queue, features {@code VIRTIO_BLK_F_FLUSH} (a flush of a RAM disk has nothing to do) and, from the
 * transport, {@code VIRTIO_F_VERSION_1}. A request is a chain: the device-readable bytes start with
 * {@code virtio_blk_outhdr {le32 type; le32 reserved; le64 sector}} and continue with the data of an OUT; the
 * device-writable bytes are the data of an IN (or the ID of a GET_ID) and end with the one-byte status.
 *
 * <p>The device does no guest-memory access of its own: {@link #handle} takes the readable bytes of a chain and
 * returns the writes to make, so the caller chooses the data path (guest memory directly, {@link #process}, or a
 * VFIO container's IOMMU). A request the disk cannot serve (a sector past the capacity, a length that is not whole
 * sectors, a header that is too short, data buffers the wrong way round) completes with {@link #S_IOERR}; an
 * unknown type with {@link #S_UNSUPP}; only a chain without a writable status byte, which cannot be answered at all,
 * is a {@link VirtioException} (the transport then sets DEVICE_NEEDS_RESET).
 */
public final class VirtioBlk implements VirtioDevice {
    public static final int DEVICE_ID = 2;
    /** {@code VIRTIO_BLK_F_FLUSH} (bit 9). */
    public static final long F_FLUSH = 1L << 9;
    public static final int SECTOR = 512;
    public static final int QUEUE_SIZE = 256;
    public static final int REQUEST_QUEUE = 0;
    /** {@code struct virtio_blk_outhdr}: 16 bytes. */
    public static final int HEADER = 16;
    /** The serial a GET_ID returns is at most this long ({@code VIRTIO_BLK_ID_BYTES}). */
    public static final int ID_BYTES = 20;
    /** Config offset of {@code capacity} (le64). */
    public static final int CONFIG_CAPACITY = 0;
    public static final int T_IN = 0;
    public static final int T_OUT = 1;
    public static final int T_FLUSH = 4;
    public static final int T_GET_ID = 8;
    public static final int S_OK = 0;
    public static final int S_IOERR = 1;
    public static final int S_UNSUPP = 2;
    /** The largest disk (a Java array holds it). */
    public static final long MAX_BYTES = 1L << 30;

    /** A write the device makes into a device-writable buffer. */
    public record Write(long address, byte[] data) {
        public Write {
            data = data.clone();
        }

        @Override
        public byte[] data() {
            return data.clone();
        }
    }

    /**
     * A request handled: its chain head, the writes to make (the status byte last), the used length (bytes
     * written, status included), the status, the request type (-1 when the header was unreadable) and the data
     * buffers the disk's data went to or came from.
     */
    public record Completion(int head, List<Write> writes, int usedLength, int status, int type,
            List<Virtqueue.Descriptor> dataBuffers) {
        public Completion {
            writes = List.copyOf(writes);
            dataBuffers = List.copyOf(dataBuffers);
        }
    }

    private final byte[] disk;
    private final byte[] id;

    /** A zeroed disk of {@code bytes} (whole sectors, at most {@link #MAX_BYTES}) whose GET_ID answers {@code id}. */
    public VirtioBlk(String id, long bytes) {
        if (bytes <= 0 || bytes % SECTOR != 0 || bytes > MAX_BYTES) {
            throw new IllegalArgumentException("a virtio-blk disk is whole 512-byte sectors, at most " + MAX_BYTES
                    + " bytes, got " + bytes);
        }
        this.disk = new byte[(int) bytes];
        this.id = Arrays.copyOf(id.getBytes(StandardCharsets.US_ASCII), Math.min(ID_BYTES, id.length()));
    }

    @Override
    public int deviceId() {
        return DEVICE_ID;
    }

    @Override
    public long features() {
        return F_FLUSH;
    }

    @Override
    public int[] queueMaxSizes() {
        return new int[] {QUEUE_SIZE};
    }

    /** Sectors of the disk. */
    public long capacity() {
        return disk.length / SECTOR;
    }

    @Override
    public long readConfig(int offset, int size) {
        if (offset < 0 || offset + size > 8) {
            return 0; // the optional fields (size_max, seg_max, geometry, blk_size, ...) are not offered
        }
        long value = capacity() >>> (8 * offset);
        return size == 8 ? value : value & ((1L << (8 * size)) - 1);
    }

    @Override
    public void writeConfig(int offset, int size, long value) {
        // capacity is read-only
    }

    @Override
    public void reset() {
        // the disk keeps its data across a driver reset, as a disk does
    }

    /** The bytes the chain's device-readable buffers hold, in order (what {@link #handle} takes). */
    public static byte[] readable(GuestMemory memory, Virtqueue.Chain chain) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        for (Virtqueue.Descriptor d : chain.descriptors()) {
            if (!d.deviceWrites() && d.length() > 0) {
                out.writeBytes(memory.read(new GuestAddress(d.address()), d.length()));
            }
        }
        return out.toByteArray();
    }

    /** Handle {@code chain} through guest memory directly: read, serve, write back; returns the completion. */
    public Completion process(GuestMemory memory, Virtqueue.Chain chain) {
        Completion c = handle(chain, readable(memory, chain));
        c.writes().forEach(w -> memory.write(new GuestAddress(w.address()), w.data()));
        return c;
    }

    /** A request whose readable buffers could not be read: only the status, IOERR. */
    public Completion failed(Virtqueue.Chain chain) {
        Segments s = segments(chain);
        return new Completion(chain.head(), List.of(new Write(s.status, new byte[] {S_IOERR})), 1, S_IOERR, -1,
                List.of());
    }

    /**
     * Serve the request of {@code chain}, whose device-readable buffers hold {@code readable}: the disk is read or
     * written, and the result says what to write into the chain's writable buffers.
     *
     * @throws VirtioException if the chain has no device-writable status byte at its end
     */
    public Completion handle(Virtqueue.Chain chain, byte[] readable) {
        Segments s = segments(chain);
        if (readable.length < HEADER) {
            return status(chain, s, S_IOERR, -1, List.of());
        }
        ByteBuffer header = ByteBuffer.wrap(readable, 0, HEADER).order(ByteOrder.LITTLE_ENDIAN);
        int type = header.getInt();
        header.getInt();
        long sector = header.getLong();
        byte[] outData = Arrays.copyOfRange(readable, HEADER, readable.length);
        long inLength = s.writable.stream().mapToLong(Virtqueue.Descriptor::length).sum();
        switch (type) {
            case T_IN -> {
                if (outData.length != 0 || !inRange(sector, inLength)) {
                    return status(chain, s, S_IOERR, type, List.of());
                }
                List<Write> writes = new ArrayList<>();
                int at = (int) (sector * SECTOR);
                for (Virtqueue.Descriptor d : s.writable) {
                    writes.add(new Write(d.address(), Arrays.copyOfRange(disk, at, at + d.length())));
                    at += d.length();
                }
                writes.add(new Write(s.status, new byte[] {S_OK}));
                return new Completion(chain.head(), writes, (int) inLength + 1, S_OK, type, s.writable);
            }
            case T_OUT -> {
                if (inLength != 0 || !inRange(sector, outData.length)) {
                    return status(chain, s, S_IOERR, type, List.of());
                }
                System.arraycopy(outData, 0, disk, (int) (sector * SECTOR), outData.length);
                return status(chain, s, S_OK, type, s.readableData(chain));
            }
            case T_FLUSH -> {
                return status(chain, s, S_OK, type, List.of());
            }
            case T_GET_ID -> {
                if (s.writable.isEmpty()) {
                    return status(chain, s, S_IOERR, type, List.of());
                }
                List<Write> writes = new ArrayList<>();
                byte[] serial = Arrays.copyOf(id, ID_BYTES);
                int at = 0;
                for (Virtqueue.Descriptor d : s.writable) {
                    int n = Math.min(d.length(), ID_BYTES - at);
                    if (n <= 0) {
                        break;
                    }
                    writes.add(new Write(d.address(), Arrays.copyOfRange(serial, at, at + n)));
                    at += n;
                }
                writes.add(new Write(s.status, new byte[] {S_OK}));
                return new Completion(chain.head(), writes, at + 1, S_OK, type, List.of());
            }
            default -> {
                return status(chain, s, S_UNSUPP, type, List.of());
            }
        }
    }

    private boolean inRange(long sector, long length) {
        return length % SECTOR == 0 && sector >= 0 && sector <= capacity()
                && length / SECTOR <= capacity() - sector;
    }

    private static Completion status(Virtqueue.Chain chain, Segments s, int status, int type,
            List<Virtqueue.Descriptor> data) {
        return new Completion(chain.head(), List.of(new Write(s.status, new byte[] {(byte) status})), 1, status, type,
                data);
    }

    /** The writable buffers before the status byte, and the status byte's address. */
    private record Segments(List<Virtqueue.Descriptor> writable, long status) {
        /** The readable buffers after the header's 16 bytes (the data of an OUT). */
        List<Virtqueue.Descriptor> readableData(Virtqueue.Chain chain) {
            List<Virtqueue.Descriptor> out = new ArrayList<>();
            long skip = HEADER;
            for (Virtqueue.Descriptor d : chain.descriptors()) {
                if (d.deviceWrites() || d.length() == 0) {
                    continue;
                }
                if (skip >= d.length()) {
                    skip -= d.length();
                    continue;
                }
                out.add(new Virtqueue.Descriptor(d.address() + skip, (int) (d.length() - skip), false));
                skip = 0;
            }
            return out;
        }
    }

    private static Segments segments(Virtqueue.Chain chain) {
        List<Virtqueue.Descriptor> all = chain.descriptors();
        Virtqueue.Descriptor last = all.get(all.size() - 1);
        if (!last.deviceWrites() || last.length() < 1) {
            throw new VirtioException("virtio-blk: the chain at head " + chain.head() + " does not end in a "
                    + "device-writable status byte");
        }
        List<Virtqueue.Descriptor> writable = new ArrayList<>();
        for (int i = 0; i < all.size() - 1; i++) {
            Virtqueue.Descriptor d = all.get(i);
            if (d.deviceWrites() && d.length() > 0) {
                writable.add(d);
            }
        }
        if (last.length() > 1) {
            writable.add(new Virtqueue.Descriptor(last.address(), last.length() - 1, true));
        }
        return new Segments(writable, last.address() + last.length() - 1);
    }
}
