package io.actovisor.memory;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Optional;

/**
 * Guest-physical memory as a device model sees it: reads and writes by {@link GuestAddress}, resolved through a
 * {@link FlatView} to the host memory behind RAM and ROM sections. Accesses may span neighbouring sections; an
 * access touching MMIO, a hole or (for writes) ROM throws {@link GuestMemoryException} and changes nothing.
 * Immutable: a new flat view gives a new {@code GuestMemory}. A device keeps the {@link GuestMemoryView} its address
 * space publishes these snapshots into, not one snapshot, so that it sees RAM added later.
 */
public final class GuestMemory {
    private final FlatView view;

    public GuestMemory(FlatView view) {
        this.view = view;
    }

    public static GuestMemory of(FlatView view) {
        return new GuestMemory(view);
    }

    public FlatView view() {
        return view;
    }

    /** The host address behind {@code gpa}, if RAM or ROM lies there. */
    public Optional<HostAddress> hostAddress(GuestAddress gpa) {
        return view.sectionAt(gpa).filter(s -> s.kind().isMemory()).map(s -> s.hostAddress(gpa));
    }

    /** Whether {@code [gpa, gpa + length)} is entirely RAM or ROM. */
    public boolean isMemory(GuestAddress gpa, long length) {
        try {
            walk(gpa.value(), length, false, (section, at, host, n, done) -> { });
            return true;
        } catch (GuestMemoryException e) {
            return false;
        }
    }

    @FunctionalInterface
    private interface Piece {
        void accept(Section section, long gpa, HostAddress host, int length, int done);
    }

    private void walk(long gpa, long length, boolean write, Piece piece) {
        if (length < 0 || length > Integer.MAX_VALUE) {
            throw new GuestMemoryException(gpa, length, "impossible length");
        }
        if (length > 0 && Long.compareUnsigned(gpa + length - 1, gpa) < 0) {
            throw new GuestMemoryException(gpa, length, "wraps past the end of the address space");
        }
        // Check the whole access first, so a failed access changes nothing.
        for (int pass = 0; pass < 2; pass++) {
            long done = 0;
            while (done < length) {
                long at = gpa + done;
                Section s = view.sectionAt(new GuestAddress(at)).orElseThrow(
                        () -> new GuestMemoryException(gpa, length, "no memory at GPA 0x" + Long.toHexString(at)));
                if (!s.kind().isMemory()) {
                    throw new GuestMemoryException(gpa, length, "GPA 0x" + Long.toHexString(at) + " is "
                            + s.kind() + " (" + s.region().name() + ")");
                }
                if (write && s.region().readOnly()) {
                    throw new GuestMemoryException(gpa, length, "GPA 0x" + Long.toHexString(at)
                            + " is read-only (" + s.region().name() + ")");
                }
                long n = Math.min(length - done, s.range().last() - at + 1);
                if (n <= 0) {
                    n = length - done; // section ends at 2^64
                }
                if (pass == 1) {
                    piece.accept(s, at, s.hostAddress(new GuestAddress(at)), (int) n, (int) done);
                }
                done += n;
            }
        }
    }

    private HostMemory memoryOf(Section s) {
        return s.region().backing().orElseThrow().memory();
    }

    public void read(GuestAddress gpa, byte[] dst, int offset, int length) {
        walk(gpa.value(), length, false, (s, at, host, n, done) -> memoryOf(s).read(host, dst, offset + done, n));
    }

    public byte[] read(GuestAddress gpa, int length) {
        byte[] out = new byte[length];
        read(gpa, out, 0, length);
        return out;
    }

    public void write(GuestAddress gpa, byte[] src, int offset, int length) {
        walk(gpa.value(), length, true, (s, at, host, n, done) -> memoryOf(s).write(host, src, offset + done, n));
    }

    public void write(GuestAddress gpa, byte[] src) {
        write(gpa, src, 0, src.length);
    }

    public byte readByte(GuestAddress gpa) {
        return read(gpa, 1)[0];
    }

    public short readShort(GuestAddress gpa) {
        return ByteBuffer.wrap(read(gpa, 2)).order(ByteOrder.LITTLE_ENDIAN).getShort();
    }

    public int readInt(GuestAddress gpa) {
        return ByteBuffer.wrap(read(gpa, 4)).order(ByteOrder.LITTLE_ENDIAN).getInt();
    }

    public long readLong(GuestAddress gpa) {
        return ByteBuffer.wrap(read(gpa, 8)).order(ByteOrder.LITTLE_ENDIAN).getLong();
    }

    public void writeByte(GuestAddress gpa, byte value) {
        write(gpa, new byte[] {value});
    }

    public void writeShort(GuestAddress gpa, short value) {
        write(gpa, ByteBuffer.allocate(2).order(ByteOrder.LITTLE_ENDIAN).putShort(value).array());
    }

    public void writeInt(GuestAddress gpa, int value) {
        write(gpa, ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN).putInt(value).array());
    }

    public void writeLong(GuestAddress gpa, long value) {
        write(gpa, ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(value).array());
    }
}
