package io.actovisor.devices.boot;

import io.actovisor.kernel.kvm.CpuidEntries;
import io.actovisor.kernel.kvm.KvmException;
import io.actovisor.kernel.kvm.KvmVcpu;
import io.actovisor.kernel.kvm.Registers;
import io.actovisor.memory.GuestAddress;
import io.actovisor.memory.GuestMemory;
import java.nio.charset.StandardCharsets;

/**
 * How actovisor boots its firmware: straight into 64-bit long mode, with the low guest memory laid out as below
 * (the firmware's {@code actovisor.h} mirrors it). Guest RAM must start at guest-physical 0 and hold at least
 * {@link #WORK_BASE} bytes plus the work area.
 *
 * <pre>
 * 0x0500  GDT: null, 64-bit code (0x08), data (0x10)
 * 0x1000  PML4        0x2000 PDPT        0x3000-0x6fff  four page directories: the first 4 GiB identity-mapped
 *                                                       with 2 MiB pages (RAM and the MMIO hole alike)
 * 0x7000  boot-info page (struct boot_info)
 * 0x10000 the firmware image, entered at its first byte with RDI = 0x7000
 * 0x80000 top of the boot stack (grows down)
 * 0x100000 the work area programs may use (boot_info.work_base)
 * </pre>
 */
public final class BootLayout {
    public static final long GDT = 0x500;
    public static final long PML4 = 0x1000;
    public static final long PDPT = 0x2000;
    public static final long PAGE_DIRECTORIES = 0x3000;
    public static final long BOOT_INFO = 0x7000;
    public static final long FIRMWARE_BASE = 0x10000;
    public static final long FIRMWARE_MAX = 0x60000;
    public static final long STACK_TOP = 0x80000;
    public static final long WORK_BASE = 0x100000;
    /** "bootinfo", little-endian. */
    public static final long BOOT_INFO_MAGIC = 0x6f666e69746f6f62L;

    /** The firmware's GDT (code 0x08, data 0x10) and page tables, as {@code actovisor.h} expects them. */
    public static final LongModeEntry LONG_MODE = new LongModeEntry(GDT, 0x08, 0x10, PML4);

    private BootLayout() {
    }

    /**
     * What the firmware runs, as the boot-info page tells it.
     *
     * @param program  the name of a {@code PROGRAM(...)} in the firmware (e.g. {@code memtest})
     * @param ramSize  bytes of RAM from guest-physical 0
     * @param workSize bytes of the work area at {@link #WORK_BASE}
     * @param args     up to four program arguments
     */
    public record BootInfo(String program, long ramSize, long workSize, long... args) {
        public BootInfo {
            if (program.getBytes(StandardCharsets.US_ASCII).length > 31) {
                throw new IllegalArgumentException("program name '" + program + "' is longer than 31 bytes");
            }
            if (args.length > 4) {
                throw new IllegalArgumentException("at most 4 program arguments, got " + args.length);
            }
            args = args.clone();
        }
    }

    /** Write the GDT, the page tables, the boot-info page and the firmware image into guest RAM. */
    public static void write(GuestMemory memory, byte[] firmware, BootInfo info) {
        if (firmware.length > FIRMWARE_MAX - FIRMWARE_BASE) {
            throw new KvmException("the firmware image is " + firmware.length + " bytes; at most "
                    + (FIRMWARE_MAX - FIRMWARE_BASE) + " fit below the boot stack");
        }
        if (info.ramSize() < WORK_BASE + info.workSize()) {
            throw new KvmException("guest RAM of " + info.ramSize() + " bytes cannot hold the boot area and a work "
                    + "area of " + info.workSize() + " bytes at 0x" + Long.toHexString(WORK_BASE));
        }
        LONG_MODE.write(memory);
        byte[] page = new byte[4096];
        java.nio.ByteBuffer b = java.nio.ByteBuffer.wrap(page).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        b.putLong(0, BOOT_INFO_MAGIC);
        byte[] name = info.program().getBytes(StandardCharsets.US_ASCII);
        System.arraycopy(name, 0, page, 8, name.length);
        b.putLong(40, info.ramSize());
        b.putLong(48, WORK_BASE);
        b.putLong(56, info.workSize());
        for (int i = 0; i < info.args().length; i++) {
            b.putLong(64 + 8 * i, info.args()[i]);
        }
        memory.write(new GuestAddress(BOOT_INFO), page);
        memory.write(new GuestAddress(FIRMWARE_BASE), firmware);
    }

    /** Put {@code vcpu} in 64-bit mode at the firmware's entry, with the host's supported CPUID. */
    public static void enterLongMode(KvmVcpu vcpu, CpuidEntries cpuid) {
        vcpu.setCpuid(cpuid);
        LONG_MODE.enter(vcpu);
        long[] regs = new long[Registers.NAMES.length];
        regs[16] = FIRMWARE_BASE;
        regs[17] = 0x2;
        regs[6] = STACK_TOP;
        regs[5] = BOOT_INFO;
        vcpu.setRegisters(new Registers(regs));
    }

    /** The firmware's checksum (FNV-1a over little-endian 64-bit words), over {@code length} bytes at {@code gpa}. */
    public static long checksum(GuestMemory memory, long gpa, long length) {
        long hash = 0xcbf29ce484222325L;
        byte[] chunk = new byte[1 << 16];
        for (long done = 0; done < length; done += chunk.length) {
            int n = (int) Math.min(chunk.length, length - done);
            memory.read(new GuestAddress(gpa + done), chunk, 0, n);
            java.nio.ByteBuffer words = java.nio.ByteBuffer.wrap(chunk, 0, n).order(java.nio.ByteOrder.LITTLE_ENDIAN);
            while (words.remaining() >= 8) {
                hash = (hash ^ words.getLong()) * 0x100000001b3L;
            }
        }
        return hash;
    }
}
