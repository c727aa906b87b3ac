package io.actovisor.devices.boot.linux;

import io.actovisor.memory.GuestAddress;
import io.actovisor.memory.GuestMemory;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.List;
import java.util.zip.GZIPInputStream;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.tukaani.xz.SingleXZInputStream;

/**
 * The uncompressed kernel inside a bzImage: the ELF {@code vmlinux} its payload holds (setup_header
 * {@code payload_offset}/{@code payload_length}, boot protocol 2.08+), unpacked here instead of by the kernel's own
 * decompressor. Its loadable segments go to their physical addresses and the vCPU enters at the ELF entry
 * ({@code phys_startup_64}) with the same 64-bit boot protocol, as Firecracker boots a vmlinux. Unpacking on the
 * host is much faster than the guest's decompressor on a slow virtual CPU; the price is no KASLR.
 *
 * @param entry    the physical entry address
 * @param segments the PT_LOAD segments
 */
public record Vmlinux(long entry, List<Segment> segments) {
    private static final int PT_LOAD = 1;
    private static final Logger LOG = LoggerFactory.getLogger(Vmlinux.class);

    public Vmlinux {
        segments = List.copyOf(segments);
    }

    /** A loadable segment: {@code data} goes to {@code physical}, then zeros up to {@code memorySize}. */
    public record Segment(long physical, byte[] data, long memorySize) {
        public Segment {
            data = data.clone();
        }

        @Override
        public byte[] data() {
            return data.clone();
        }

        public long end() {
            return physical + memorySize;
        }
    }

    /** The lowest and the highest physical address the segments occupy. */
    public long start() {
        return segments.stream().mapToLong(Segment::physical).min().orElse(0);
    }

    public long end() {
        return segments.stream().mapToLong(Segment::end).max().orElse(0);
    }

    /**
     * {@link #unpack}, reading the ELF from {@code cached} when it is there and writing it there (through a temporary
     * file and a rename, so that a reader never sees half a file) when it is not; a cache that cannot be written is
     * logged and otherwise ignored.
     */
    static Vmlinux unpackCached(String source, byte[] image, int setupBytes, Path cached) {
        if (Files.isRegularFile(cached)) {
            try {
                Vmlinux vmlinux = parse(source + " (unpacked in " + cached + ")", Files.readAllBytes(cached));
                LOG.info("The kernel {} was unpacked before: {}", source, cached);
                return vmlinux;
            } catch (IOException | LinuxBootException e) {
                LOG.warn("Cannot use the unpacked kernel {} ({}); unpacking {} again", cached, e.getMessage(), source);
            }
        }
        byte[] elf = elf(source, image, setupBytes);
        Vmlinux vmlinux = parse(source, elf);
        Path dir = cached.toAbsolutePath().getParent();
        try {
            Files.createDirectories(dir);
            Path partial = Files.createTempFile(dir, "vmlinux-", ".partial");
            try {
                Files.write(partial, elf);
                Files.move(partial, cached, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            } finally {
                Files.deleteIfExists(partial);
            }
            LOG.info("Unpacked the kernel {} into {}", source, cached);
        } catch (IOException e) {
            LOG.info("Cannot keep the unpacked kernel {} in {} ({}); it will be unpacked again next time", source,
                    dir, e.toString());
        }
        return vmlinux;
    }

    /** Unpack and parse the payload of {@code image}, read from {@code source}. */
    static Vmlinux unpack(String source, byte[] image, int setupBytes) {
        return parse(source, elf(source, image, setupBytes));
    }

    /** The ELF the payload of {@code image} holds, unpacked. */
    private static byte[] elf(String source, byte[] image, int setupBytes) {
        ByteBuffer b = ByteBuffer.wrap(image).order(ByteOrder.LITTLE_ENDIAN);
        long offset = setupBytes + (b.getInt(BootParamsAbi.PAYLOAD_OFFSET) & 0xffff_ffffL);
        long length = b.getInt(BootParamsAbi.PAYLOAD_LENGTH) & 0xffff_ffffL;
        if (length == 0 || offset + length > image.length) {
            throw new LinuxBootException("the kernel image " + source + " has no payload within its "
                    + image.length + " bytes (payload_offset " + (offset - setupBytes) + ", payload_length "
                    + length + ")");
        }
        byte[] elf;
        try (InputStream in = decompressor(source, new ByteArrayInputStream(image, (int) offset, (int) length),
                image[(int) offset] & 0xff, image[(int) offset + 1] & 0xff)) {
            elf = in.readAllBytes();
        } catch (IOException e) {
            throw new LinuxBootException("cannot unpack the kernel in " + source + ": " + e, e);
        }
        return elf;
    }

    private static InputStream decompressor(String source, InputStream payload, int magic0, int magic1)
            throws IOException {
        if (magic0 == 0xfd && magic1 == '7') {
            // One stream only: the payload ends with the 4-byte uncompressed size the kernel build appends.
            return new SingleXZInputStream(payload);
        }
        if (magic0 == 0x1f && magic1 == 0x8b) {
            return new GZIPInputStream(payload);
        }
        throw new LinuxBootException("the kernel in " + source + " is compressed with a method actovisor cannot "
                + "unpack (payload magic 0x" + Integer.toHexString(magic0) + " 0x" + Integer.toHexString(magic1)
                + "; xz and gzip are supported)");
    }

    /** Parse an x86-64 ELF executable. */
    static Vmlinux parse(String source, byte[] elf) {
        ByteBuffer b = ByteBuffer.wrap(elf).order(ByteOrder.LITTLE_ENDIAN);
        if (elf.length < 64 || b.getInt(0) != 0x464c457f || elf[4] != 2 || elf[5] != 1
                || (b.getShort(18) & 0xffff) != 62) {
            throw new LinuxBootException("the kernel payload of " + source + " is not a 64-bit little-endian x86-64 "
                    + "ELF file");
        }
        long entry = b.getLong(24);
        long phoff = b.getLong(32);
        int phentsize = b.getShort(54) & 0xffff;
        int phnum = b.getShort(56) & 0xffff;
        List<Segment> segments = new ArrayList<>();
        for (int i = 0; i < phnum; i++) {
            int at = (int) (phoff + (long) i * phentsize);
            if (b.getInt(at) != PT_LOAD) {
                continue;
            }
            long fileOffset = b.getLong(at + 8);
            long physical = b.getLong(at + 24);
            long fileSize = b.getLong(at + 32);
            long memorySize = b.getLong(at + 40);
            if (fileOffset + fileSize > elf.length || memorySize < fileSize) {
                throw new LinuxBootException("the kernel payload of " + source + " has a PT_LOAD segment outside "
                        + "the file (offset " + fileOffset + ", size " + fileSize + ")");
            }
            byte[] data = new byte[(int) fileSize];
            System.arraycopy(elf, (int) fileOffset, data, 0, data.length);
            segments.add(new Segment(physical, data, memorySize));
        }
        if (segments.isEmpty()) {
            throw new LinuxBootException("the kernel payload of " + source + " has no loadable segment");
        }
        return new Vmlinux(entry, segments);
    }

    /** Write the segments (and their zero tails) into guest memory. */
    void load(GuestMemory memory) {
        for (Segment s : segments) {
            memory.write(new GuestAddress(s.physical()), s.data);
            long zeros = s.memorySize() - s.data.length;
            byte[] chunk = new byte[1 << 20];
            for (long done = 0; done < zeros; done += chunk.length) {
                int n = (int) Math.min(chunk.length, zeros - done);
                memory.write(new GuestAddress(s.physical() + s.data.length + done), chunk, 0, n);
            }
        }
    }
}
