package io.actovisor.devices.boot.linux;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.Optional;

/**
 * A Linux x86 {@code bzImage} as the boot protocol (Documentation/arch/x86/boot.rst) describes it: a real-mode setup
 * of {@code setup_sects + 1} sectors whose {@code setup_header} says how to load the protected-mode kernel that
 * follows. Only kernels that can be entered in 64-bit mode are accepted: boot protocol 2.12 or later with
 * {@code XLF_KERNEL_64} and {@code LOADED_HIGH}.
 *
 * @param source         where the image came from, for messages
 * @param protocol       the boot protocol version, e.g. {@code 0x020f} for 2.15
 * @param setupBytes     bytes of the real-mode part (boot sector included)
 * @param setupHeader    the image's setup header (from offset 0x1f1), which the zero page carries
 * @param kernel         the protected-mode kernel, to be loaded at a {@code kernelAlignment}-aligned address
 * @param cmdlineMax     the longest command line the kernel accepts, without its terminating NUL
 * @param initrdAddrMax  the highest address the initrd's last byte may have
 * @param kernelAlignment the alignment the kernel's load address needs
 * @param relocatable    whether the kernel may be loaded at any {@code kernelAlignment}-aligned address
 * @param prefAddress    where the kernel prefers to be loaded
 * @param initSize       bytes the kernel needs from its load address while it decompresses and starts
 * @param vmlinux        the uncompressed kernel of the payload (boot protocol 2.08+)
 */
public record BzImage(String source, int protocol, int setupBytes, byte[] setupHeader, byte[] kernel, int cmdlineMax,
        long initrdAddrMax, long kernelAlignment, boolean relocatable, long prefAddress, long initSize,
        Vmlinux vmlinux) {
    /** The 64-bit entry point is this many bytes into the protected-mode kernel. */
    public static final int ENTRY_64_OFFSET = 0x200;
    /** The oldest boot protocol with {@code xloadflags} (and so a declared 64-bit entry point). */
    public static final int MIN_PROTOCOL = 0x020c;
    private static final int SECTOR = 512;

    public BzImage {
        setupHeader = setupHeader.clone();
        kernel = kernel.clone();
    }

    /** The setup header bytes (a copy). */
    @Override
    public byte[] setupHeader() {
        return setupHeader.clone();
    }

    /** The protected-mode kernel (a copy). */
    @Override
    public byte[] kernel() {
        return kernel.clone();
    }

    /** Bytes of the protected-mode kernel. */
    public int kernelSize() {
        return kernel.length;
    }

    /** Read and check {@code file}; errors name the file and what is wrong with it. */
    public static BzImage load(Path file) {
        byte[] bytes;
        try {
            bytes = Files.readAllBytes(file);
        } catch (IOException e) {
            throw new LinuxBootException("cannot read the kernel image " + file + ": " + e, e);
        }
        return parse(file.toString(), bytes);
    }

    /**
     * {@link #load(Path)}, with the unpacked kernel kept in {@code cacheDir} ({@link KernelLocator#cacheDirectory()})
     * as {@code vmlinux-<file name>-<digest of the image>.elf}: unpacking takes seconds on a fast CPU and minutes on
     * an emulated one. A cache that cannot be written (a read-only directory) only costs the unpacking.
     */
    public static BzImage load(Path file, Path cacheDir) {
        byte[] bytes;
        try {
            bytes = Files.readAllBytes(file);
        } catch (IOException e) {
            throw new LinuxBootException("cannot read the kernel image " + file + ": " + e, e);
        }
        return parse(file.toString(), bytes, Optional.of(cacheDir.resolve("vmlinux-" + file.getFileName() + "-"
                + digest(bytes) + ".elf")));
    }

    /** Check {@code image} (from {@code source}) and split it into its setup and its protected-mode kernel. */
    public static BzImage parse(String source, byte[] image) {
        return parse(source, image, Optional.empty());
    }

    private static BzImage parse(String source, byte[] image, Optional<Path> cachedVmlinux) {
        if (image.length < BootParamsAbi.INIT_SIZE + 4) {
            throw notBzImage(source, "it is only " + image.length + " bytes long");
        }
        ByteBuffer b = ByteBuffer.wrap(image).order(ByteOrder.LITTLE_ENDIAN);
        if ((b.getShort(BootParamsAbi.BOOT_FLAG) & 0xffff) != BootParamsAbi.BOOT_FLAG_MAGIC) {
            throw notBzImage(source, "it has no boot sector signature 0xaa55 at offset 0x1fe");
        }
        if (b.getInt(BootParamsAbi.HEADER) != BootParamsAbi.HEADER_MAGIC) {
            throw notBzImage(source, "it has no \"HdrS\" setup header at offset 0x202");
        }
        int protocol = b.getShort(BootParamsAbi.VERSION) & 0xffff;
        if (protocol < MIN_PROTOCOL) {
            throw new LinuxBootException("the kernel image " + source + " speaks boot protocol "
                    + version(protocol) + "; actovisor needs " + version(MIN_PROTOCOL) + " or later (a 64-bit entry "
                    + "point)");
        }
        int loadflags = b.get(BootParamsAbi.LOADFLAGS) & 0xff;
        int xloadflags = b.getShort(BootParamsAbi.XLOADFLAGS) & 0xffff;
        if ((loadflags & BootParamsAbi.LOADED_HIGH) == 0) {
            throw new LinuxBootException("the kernel image " + source + " is a zImage (loaded low); actovisor "
                    + "boots bzImages only");
        }
        if ((xloadflags & BootParamsAbi.XLF_KERNEL_64) == 0) {
            throw new LinuxBootException("the kernel image " + source + " has no 64-bit entry point "
                    + "(XLF_KERNEL_64 is clear): it is not an x86-64 kernel");
        }
        int setupSects = b.get(BootParamsAbi.SETUP_SECTS) & 0xff;
        int setupBytes = ((setupSects == 0 ? 4 : setupSects) + 1) * SECTOR;
        if (setupBytes >= image.length) {
            throw notBzImage(source, "its setup (" + setupBytes + " bytes) leaves no kernel in " + image.length
                    + " bytes");
        }
        long alignment = b.getInt(BootParamsAbi.KERNEL_ALIGNMENT) & 0xffff_ffffL;
        if (alignment == 0 || Long.bitCount(alignment) != 1) {
            throw notBzImage(source, "its kernel_alignment 0x" + Long.toHexString(alignment)
                    + " is not a power of two");
        }
        int headerEnd = Math.min(0x202 + (image[0x201] & 0xff), setupBytes);
        return new BzImage(source, protocol, setupBytes, Arrays.copyOfRange(image, BootParamsAbi.HDR, headerEnd),
                Arrays.copyOfRange(image, setupBytes, image.length),
                b.getInt(BootParamsAbi.CMDLINE_SIZE), b.getInt(BootParamsAbi.INITRD_ADDR_MAX) & 0xffff_ffffL,
                alignment, b.get(BootParamsAbi.RELOCATABLE_KERNEL) != 0, b.getLong(BootParamsAbi.PREF_ADDRESS),
                b.getInt(BootParamsAbi.INIT_SIZE) & 0xffff_ffffL, cachedVmlinux.isPresent()
                        ? Vmlinux.unpackCached(source, image, setupBytes, cachedVmlinux.get())
                        : Vmlinux.unpack(source, image, setupBytes));
    }

    private static String digest(byte[] bytes) {
        try {
            return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(bytes)).substring(0, 16);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-256 is missing from this JVM", e);
        }
    }

    private static LinuxBootException notBzImage(String source, String why) {
        return new LinuxBootException("the kernel image " + source + " is not a bzImage: " + why);
    }

    /** A protocol number as "2.15". */
    public static String version(int protocol) {
        return (protocol >> 8) + "." + (protocol & 0xff);
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof BzImage other && other.source.equals(source) && Arrays.equals(other.kernel, kernel);
    }

    @Override
    public int hashCode() {
        return source.hashCode() * 31 + Arrays.hashCode(kernel);
    }

    @Override
    public String toString() {
        return "bzImage " + source + " (protocol " + version(protocol) + ", " + kernel.length + " kernel bytes)";
    }
}
