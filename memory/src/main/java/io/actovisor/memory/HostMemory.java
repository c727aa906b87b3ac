package io.actovisor.memory;

import io.actovisor.memory.sys.Mman;
import io.actovisor.memory.sys.NativeBuffer;
import io.actovisor.memory.sys.NativeException;
import io.actovisor.memory.sys.Posix;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.OptionalInt;
import java.util.OptionalLong;

/**
 * One mapping of host memory that backs guest RAM: anonymous private memory, or a memfd mapped shared. It is the
 * single owner of the mapping (and of the memfd): {@link #close()} unmaps and closes, idempotently. Every access
 * is bounds-checked here, the one door to guest RAM; an access after close throws instead of faulting the JVM.
 *
 * <p>Not thread-safe against {@link #close()}: the owner closes it only after everyone else is done (in practice
 * the VM closes guest RAM after all actors using it have stopped).
 */
public final class HostMemory implements AutoCloseable {
    /** The page size discards, populates and pagemap work in. */
    public static final long PAGE_SIZE = 4096;
    private static final long CHUNK = 1L << 30;
    private static final Path PAGEMAP = Path.of("/proc/self/pagemap");

    private final Posix posix;
    private final String name;
    private final long base;
    private final long size;
    private final int memfd;
    private final NativeBuffer[] chunks;
    private volatile boolean closed;

    private HostMemory(Posix posix, String name, long base, long size, int memfd) {
        this.posix = posix;
        this.name = name;
        this.base = base;
        this.size = size;
        this.memfd = memfd;
        int count = (int) ((size + CHUNK - 1) / CHUNK);
        this.chunks = new NativeBuffer[count];
        for (int i = 0; i < count; i++) {
            chunks[i] = NativeBuffer.view(base + i * CHUNK, Math.min(CHUNK, size - i * CHUNK));
        }
    }

    /** Anonymous private memory (MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE); discard is MADV_DONTNEED. */
    public static HostMemory anonymous(String name, long size) {
        return anonymous(Posix.system(), name, size);
    }

    public static HostMemory anonymous(Posix posix, String name, long size) {
        checkSize(name, size);
        long addr = posix.mmap(0, size, Mman.PROT_READ | Mman.PROT_WRITE,
                Mman.MAP_PRIVATE | Mman.MAP_ANONYMOUS | Mman.MAP_NORESERVE, -1, 0);
        return new HostMemory(posix, name, addr, size, -1);
    }

    /** A memfd of {@code size} bytes mapped MAP_SHARED; discard punches a hole in the file. */
    public static HostMemory shared(String name, long size) {
        return shared(Posix.system(), name, size);
    }

    public static HostMemory shared(Posix posix, String name, long size) {
        checkSize(name, size);
        int fd = posix.memfdCreate("actovisor:" + name, Mman.MFD_CLOEXEC);
        try {
            posix.ftruncate(fd, size);
            long addr = posix.mmap(0, size, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_SHARED, fd, 0);
            return new HostMemory(posix, name, addr, size, fd);
        } catch (RuntimeException e) {
            posix.close(fd);
            throw e;
        }
    }

    private static void checkSize(String name, long size) {
        if (size <= 0 || size % PAGE_SIZE != 0) {
            throw new IllegalArgumentException("host memory " + name + ": size " + size
                    + " must be a positive multiple of the page size " + PAGE_SIZE);
        }
    }

    public String name() {
        return name;
    }

    public HostAddress base() {
        return new HostAddress(base);
    }

    public long size() {
        return size;
    }

    /** The host virtual addresses of the mapping. */
    public AddressRange hostRange() {
        return new AddressRange(base, size);
    }

    /** Whether the memory is a shared memfd (as opposed to anonymous private). */
    public boolean isShared() {
        return memfd >= 0;
    }

    /** The memfd behind shared memory; owned by this object. */
    public OptionalInt memfd() {
        return memfd >= 0 ? OptionalInt.of(memfd) : OptionalInt.empty();
    }

    public boolean isClosed() {
        return closed;
    }

    private long offsetOf(HostAddress address, long length) {
        if (closed) {
            throw new IllegalStateException("host memory " + name + " is closed");
        }
        long offset = address.value() - base;
        if (Long.compareUnsigned(address.value(), base) < 0 || length < 0 || offset + length > size
                || offset + length < offset) {
            throw new IndexOutOfBoundsException("access of " + length + " bytes at " + address
                    + " is outside host memory " + name + " " + hostRange());
        }
        return offset;
    }

    private long checkPages(AddressRange range, String operation) {
        long offset = offsetOf(new HostAddress(range.base()), range.size());
        if (!range.isAligned(PAGE_SIZE)) {
            throw new IllegalArgumentException(operation + " of " + range + " in host memory " + name
                    + " is not page-aligned");
        }
        return offset;
    }

    /** The host range of bytes [offset, offset + length), checked to be page-aligned and inside this memory. */
    private AddressRange pages(long offset, long length, String operation) {
        if (closed) {
            throw new IllegalStateException("host memory " + name + " is closed");
        }
        if (offset < 0 || length <= 0 || offset > size - length) {
            throw new IndexOutOfBoundsException(operation + " of 0x" + Long.toHexString(length) + " bytes at offset 0x"
                    + Long.toHexString(offset) + " is outside host memory " + name + " of size 0x"
                    + Long.toHexString(size));
        }
        if (offset % PAGE_SIZE != 0 || length % PAGE_SIZE != 0) {
            throw new IllegalArgumentException(operation + " of 0x" + Long.toHexString(length) + " bytes at offset 0x"
                    + Long.toHexString(offset) + " in host memory " + name + " is not page-aligned");
        }
        return AddressRange.of(base + offset, length);
    }

    /**
     * Give the pages of bytes [offset, offset + length) back to the host: MADV_DONTNEED for private memory (the next
     * touch faults in a fresh zero page), a punched hole for a memfd. Page-aligned; pass coalesced ranges.
     */
    public void discard(long offset, long length) {
        AddressRange range = pages(offset, length, "discard");
        if (memfd >= 0) {
            posix.fallocate(memfd, Mman.FALLOC_FL_PUNCH_HOLE | Mman.FALLOC_FL_KEEP_SIZE, offset, length);
        } else {
            posix.madvise(range.base(), range.size(), Mman.MADV_DONTNEED);
        }
    }

    /**
     * Fault in writable pages for bytes [offset, offset + length) now (MADV_POPULATE_WRITE), without changing their
     * contents. Page-aligned.
     */
    public void populate(long offset, long length) {
        AddressRange range = pages(offset, length, "populate");
        try {
            posix.madvise(range.base(), range.size(), Mman.MADV_POPULATE_WRITE);
        } catch (NativeException e) {
            if (e.errno() != io.actovisor.memory.sys.Errno.EINVAL) {
                throw e;
            }
            // Kernels before 5.14 lack MADV_POPULATE_WRITE: touch each page, writing back what is there.
            for (long a = range.base(); Long.compareUnsigned(a, range.last()) <= 0; a += PAGE_SIZE) {
                HostAddress at = new HostAddress(a);
                writeByte(at, readByte(at));
            }
        }
    }

    /** How many bytes of {@code range} are resident in host RAM now (mincore). */
    public long residentBytes(AddressRange range) {
        checkPages(range, "residency check");
        long pages = range.size() / PAGE_SIZE;
        long resident = 0;
        long step = 1 << 20;
        try (NativeBuffer vec = NativeBuffer.allocate((int) Math.min(pages, step))) {
            for (long done = 0; done < pages; done += step) {
                long n = Math.min(step, pages - done);
                posix.mincore(range.base() + done * PAGE_SIZE, n * PAGE_SIZE, vec.address());
                for (int i = 0; i < n; i++) {
                    if ((vec.getByte(i) & 1) != 0) {
                        resident++;
                    }
                }
            }
        }
        return resident * PAGE_SIZE;
    }

    /**
     * The physical page frame number behind {@code address}, from {@code /proc/self/pagemap}; empty when the page
     * is not present. Throws {@link PfnUnavailableException} when the kernel hides PFNs (no CAP_SYS_ADMIN).
     */
    public OptionalLong pfn(HostAddress address) {
        offsetOf(address, 1);
        long entry;
        try (FileChannel ch = FileChannel.open(PAGEMAP, StandardOpenOption.READ)) {
            ByteBuffer buf = ByteBuffer.allocate(8).order(ByteOrder.nativeOrder());
            long position = (address.value() >>> 12) * 8;
            while (buf.hasRemaining()) {
                if (ch.read(buf, position + buf.position()) < 0) {
                    throw new PfnUnavailableException("short read of " + PAGEMAP + " at " + address);
                }
            }
            entry = buf.getLong(0);
        } catch (IOException e) {
            throw new PfnUnavailableException("cannot read " + PAGEMAP + ": " + e.getMessage());
        }
        boolean present = (entry & (1L << 63)) != 0;
        if (!present) {
            return OptionalLong.empty();
        }
        long pfn = entry & ((1L << 55) - 1);
        if (pfn == 0) {
            throw new PfnUnavailableException(PAGEMAP + " hides page frame numbers (reading them needs "
                    + "CAP_SYS_ADMIN); the page at " + address + " is present but its PFN reads as 0");
        }
        return OptionalLong.of(pfn);
    }

    private NativeBuffer chunk(long offset) {
        return chunks[(int) (offset / CHUNK)];
    }

    public byte readByte(HostAddress address) {
        long off = offsetOf(address, 1);
        return chunk(off).getByte(off % CHUNK);
    }

    public void writeByte(HostAddress address, byte value) {
        long off = offsetOf(address, 1);
        chunk(off).putByte(off % CHUNK, value);
    }

    public int readInt(HostAddress address) {
        long off = offsetOf(address, 4);
        if (off % CHUNK <= CHUNK - 4) {
            return chunk(off).getInt(off % CHUNK);
        }
        return ByteBuffer.wrap(read(address, 4)).order(ByteOrder.LITTLE_ENDIAN).getInt();
    }

    public void writeInt(HostAddress address, int value) {
        long off = offsetOf(address, 4);
        if (off % CHUNK <= CHUNK - 4) {
            chunk(off).putInt(off % CHUNK, value);
        } else {
            write(address, ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN).putInt(value).array());
        }
    }

    public long readLong(HostAddress address) {
        long off = offsetOf(address, 8);
        if (off % CHUNK <= CHUNK - 8) {
            return chunk(off).getLong(off % CHUNK);
        }
        return ByteBuffer.wrap(read(address, 8)).order(ByteOrder.LITTLE_ENDIAN).getLong();
    }

    public void writeLong(HostAddress address, long value) {
        long off = offsetOf(address, 8);
        if (off % CHUNK <= CHUNK - 8) {
            chunk(off).putLong(off % CHUNK, value);
        } else {
            write(address, ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(value).array());
        }
    }

    /** Copy {@code length} bytes at {@code address} into {@code dst[dstOffset..]}. */
    public void read(HostAddress address, byte[] dst, int dstOffset, int length) {
        long off = offsetOf(address, length);
        int done = 0;
        while (done < length) {
            long at = off + done;
            int n = (int) Math.min(length - done, CHUNK - at % CHUNK);
            chunk(at).getBytes(at % CHUNK, dst, dstOffset + done, n);
            done += n;
        }
    }

    public byte[] read(HostAddress address, int length) {
        byte[] out = new byte[length];
        read(address, out, 0, length);
        return out;
    }

    /** Copy {@code src[srcOffset..srcOffset+length)} to {@code address}. */
    public void write(HostAddress address, byte[] src, int srcOffset, int length) {
        long off = offsetOf(address, length);
        int done = 0;
        while (done < length) {
            long at = off + done;
            int n = (int) Math.min(length - done, CHUNK - at % CHUNK);
            chunk(at).putBytes(at % CHUNK, src, srcOffset + done, n);
            done += n;
        }
    }

    public void write(HostAddress address, byte[] src) {
        write(address, src, 0, src.length);
    }

    /** Unmap the memory and close the memfd. Idempotent. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        try {
            posix.munmap(base, size);
        } finally {
            if (memfd >= 0) {
                posix.close(memfd);
            }
        }
    }

    @Override
    public String toString() {
        return "HostMemory(" + name + ", " + (isShared() ? "memfd" : "anonymous") + ", " + hostRange() + ")";
    }
}
