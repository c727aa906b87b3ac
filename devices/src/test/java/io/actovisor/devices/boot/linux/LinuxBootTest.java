package io.actovisor.devices.boot.linux;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.memory.AddressRange;
import io.actovisor.memory.testing.NativeRequirement;
import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import java.util.zip.GZIPOutputStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** bzImage checks, the load plan's limits and the zero page, on a synthetic kernel and on the machine's own. */
class LinuxBootTest {
    private static final List<AddressRange> RAM_64M = List.of(AddressRange.of(0, 64L << 20));

    /** A minimal ELF64 x86-64 executable with one PT_LOAD of {@code size} bytes at {@code physical}. */
    static byte[] elf(long physical, int size) {
        ByteBuffer b = ByteBuffer.allocate(64 + 56 + size).order(ByteOrder.LITTLE_ENDIAN);
        b.putInt(0, 0x464c457f).put(4, (byte) 2).put(5, (byte) 1).put(6, (byte) 1);
        b.putShort(16, (short) 2).putShort(18, (short) 62).putInt(20, 1).putLong(24, physical);
        b.putLong(32, 64).putShort(52, (short) 64).putShort(54, (short) 56).putShort(56, (short) 1);
        b.putInt(64, 1).putLong(64 + 8, 120).putLong(64 + 16, 0xffffffff81000000L).putLong(64 + 24, physical)
                .putLong(64 + 32, size).putLong(64 + 40, size + 4096L);
        for (int i = 0; i < size; i++) {
            b.put(120 + i, (byte) i);
        }
        return b.array();
    }

    /** A bzImage around a gzip payload of {@code elf}, protocol 2.15, cmdline_size 2047. */
    static byte[] bzImage(byte[] elf) throws Exception {
        ByteArrayOutputStream gz = new ByteArrayOutputStream();
        try (GZIPOutputStream out = new GZIPOutputStream(gz)) {
            out.write(elf);
        }
        int setupSects = 4;
        int setupBytes = (setupSects + 1) * 512;
        byte[] payload = gz.toByteArray();
        ByteBuffer b = ByteBuffer.allocate(setupBytes + 0x100 + payload.length).order(ByteOrder.LITTLE_ENDIAN);
        b.put(BootParamsAbi.SETUP_SECTS, (byte) setupSects);
        b.putShort(BootParamsAbi.BOOT_FLAG, (short) 0xaa55);
        b.put(0x201, (byte) 0x6a);
        b.putInt(BootParamsAbi.HEADER, BootParamsAbi.HEADER_MAGIC);
        b.putShort(BootParamsAbi.VERSION, (short) 0x020f);
        b.put(BootParamsAbi.LOADFLAGS, (byte) BootParamsAbi.LOADED_HIGH);
        b.putInt(BootParamsAbi.INITRD_ADDR_MAX, 0x7fffffff);
        b.putInt(BootParamsAbi.KERNEL_ALIGNMENT, 0x200000);
        b.put(BootParamsAbi.RELOCATABLE_KERNEL, (byte) 1);
        b.putShort(BootParamsAbi.XLOADFLAGS, (short) (BootParamsAbi.XLF_KERNEL_64
                | BootParamsAbi.XLF_CAN_BE_LOADED_ABOVE_4G));
        b.putInt(BootParamsAbi.CMDLINE_SIZE, 2047);
        b.putInt(BootParamsAbi.PAYLOAD_OFFSET, 0x100);
        b.putInt(BootParamsAbi.PAYLOAD_LENGTH, payload.length);
        b.putLong(BootParamsAbi.PREF_ADDRESS, 0x1000000);
        b.putInt(BootParamsAbi.INIT_SIZE, 0x800000);
        b.position(setupBytes + 0x100);
        b.put(payload);
        return b.array();
    }

    @Test
    void aSyntheticBzImageIsParsedAndItsPayloadUnpacked() throws Exception {
        BzImage image = BzImage.parse("synthetic", bzImage(elf(0x1000000, 8192)));
        assertEquals(0x020f, image.protocol());
        assertEquals(2047, image.cmdlineMax());
        assertEquals(0x1000000, image.vmlinux().entry());
        assertEquals(0x1000000 + 8192 + 4096, image.vmlinux().end());
        assertEquals("2.15", BzImage.version(image.protocol()));
    }

    @Test
    void whatIsNotABzImageIsRefusedNamingTheFile(@TempDir Path dir) throws Exception {
        Path text = Files.writeString(dir.resolve("kernel.txt"), "not a kernel at all".repeat(100));
        LinuxBootException e = assertThrows(LinuxBootException.class, () -> BzImage.load(text));
        assertTrue(e.getMessage().contains(text.toString()) && e.getMessage().contains("not a bzImage"),
                e.getMessage());
        byte[] old = bzImage(elf(0x1000000, 16));
        ByteBuffer.wrap(old).order(ByteOrder.LITTLE_ENDIAN).putShort(BootParamsAbi.VERSION, (short) 0x0206);
        e = assertThrows(LinuxBootException.class, () -> BzImage.parse("old", old));
        assertTrue(e.getMessage().contains("2.6") && e.getMessage().contains("2.12"), e.getMessage());
        byte[] i386 = bzImage(elf(0x1000000, 16));
        ByteBuffer.wrap(i386).order(ByteOrder.LITTLE_ENDIAN).putShort(BootParamsAbi.XLOADFLAGS, (short) 0);
        e = assertThrows(LinuxBootException.class, () -> BzImage.parse("i386", i386));
        assertTrue(e.getMessage().contains("XLF_KERNEL_64"), e.getMessage());
    }

    @Test
    void aCommandLineOverTheKernelsLimitIsRefusedWithTheLimit() throws Exception {
        BzImage image = BzImage.parse("k", bzImage(elf(0x1000000, 16)));
        LinuxBootException e = assertThrows(LinuxBootException.class, () -> LinuxBoot.plan(RAM_64M, image,
                Optional.empty(), "x".repeat(2048)));
        assertTrue(e.getMessage().contains("2048 bytes") && e.getMessage().contains("at most 2047"),
                e.getMessage());
        LinuxBoot.plan(RAM_64M, image, Optional.empty(), "x".repeat(2047));
    }

    @Test
    void theInitrdGoesAtTheTopOfRamAndOneThatDoesNotFitIsRefused() throws Exception {
        BzImage image = BzImage.parse("k", bzImage(elf(0x1000000, 16)));
        LinuxBoot.Plan plan = LinuxBoot.plan(RAM_64M, image, Optional.of(new LinuxBoot.Initrd("rd",
                new byte[10_000])), "");
        assertEquals((64L << 20) - 3 * 4096, plan.initrdAddress());
        assertEquals(10_000, plan.initrdSize());
        LinuxBootException e = assertThrows(LinuxBootException.class, () -> LinuxBoot.plan(RAM_64M, image,
                Optional.of(new LinuxBoot.Initrd("big.cpio", new byte[60 << 20])), ""));
        assertTrue(e.getMessage().contains("big.cpio") && e.getMessage().contains("at most"), e.getMessage());
    }

    @Test
    void theZeroPageCarriesTheHeaderCommandLineInitrdRsdpAndE820() throws Exception {
        BzImage image = BzImage.parse("k", bzImage(elf(0x1000000, 16)));
        List<E820Map.Entry> e820 = E820Map.of(RAM_64M);
        ByteBuffer page = ByteBuffer.wrap(LinuxBoot.zeroPage(image, 0x3000000, 12345, 0xe0000, e820))
                .order(ByteOrder.LITTLE_ENDIAN);
        assertEquals(BootParamsAbi.HEADER_MAGIC, page.getInt(BootParamsAbi.HEADER));
        assertEquals(0xff, page.get(BootParamsAbi.TYPE_OF_LOADER) & 0xff);
        assertEquals(LinuxBoot.CMDLINE, page.getInt(BootParamsAbi.CMD_LINE_PTR));
        assertEquals(0x3000000, page.getInt(BootParamsAbi.RAMDISK_IMAGE));
        assertEquals(12345, page.getInt(BootParamsAbi.RAMDISK_SIZE));
        assertEquals(0xe0000, page.getLong(BootParamsAbi.ACPI_RSDP_ADDR));
        assertEquals(3, page.get(BootParamsAbi.E820_ENTRIES));
        int second = BootParamsAbi.E820_TABLE + BootParamsAbi.E820_ENTRY_SIZE;
        assertEquals(E820Map.EBDA_START, page.getLong(second + BootParamsAbi.E820_ADDR));
        assertEquals(BootParamsAbi.E820_RESERVED, page.getInt(second + BootParamsAbi.E820_TYPE));
    }

    @Test
    void theMachinesOwnKernelParses() throws Exception {
        Optional<Path> kernel = KernelLocator.newestKernel();
        NativeRequirement.optional("a readable /boot/vmlinuz-*", kernel.isPresent() ? Optional.empty()
                : Optional.of("no readable /boot/vmlinuz-*"));
        org.junit.jupiter.api.Assumptions.assumeTrue(kernel.isPresent());
        BzImage image = BzImage.load(kernel.get());
        assertTrue(image.protocol() >= BzImage.MIN_PROTOCOL);
        assertTrue(image.vmlinux().entry() >= LinuxBoot.KERNEL_BASE, image.toString());
    }

    @Test
    void releasesCompareNumerically() {
        assertTrue(KernelLocator.compareReleases("6.10.0-1-amd64", "6.9.0-1-amd64") > 0);
        assertTrue(KernelLocator.compareReleases("6.1.0-57-amd64", "6.1.0-9-amd64") > 0);
    }
}
