package io.actovisor.devices.boot.linux;

import io.actovisor.devices.acpi.AcpiTables;
import io.actovisor.devices.boot.LongModeEntry;
import io.actovisor.kernel.kvm.CpuidEntries;
import io.actovisor.kernel.kvm.KvmVcpu;
import io.actovisor.kernel.kvm.Registers;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.GuestAddress;
import io.actovisor.memory.GuestMemory;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Optional;

/**
 * Loads a Linux {@link BzImage} for the x86 64-bit boot protocol (Documentation/arch/x86/boot.rst, "64-bit Boot
 * Protocol") and puts the boot vCPU at its 64-bit entry point. Guest RAM must start at guest-physical 0 and reach
 * past {@link #KERNEL_BASE}:
 *
 * <pre>
 * 0x00500  GDT: null, null, __BOOT_CS (0x10, 64-bit code), __BOOT_DS (0x18, data), all flat
 * 0x01000  PML4, 0x2000 PDPT, 0x3000-0x6fff four page directories: the first 4 GiB identity-mapped, 2 MiB pages
 * 0x07000  the zero page (struct boot_params): setup header, command line pointer, initrd, e820 map, RSDP
 * 0x08ff0  an initial stack (the kernel sets up its own at once)
 * 0x20000  the command line, NUL-terminated
 * 0xe0000  the ACPI tables, RSDP first (reserved in the e820 map, found by Linux's scan too)
 * 16 MiB  the kernel's ELF segments (unpacked from the bzImage's payload, see {@link Vmlinux}) at their physical
 *         addresses, entered at the ELF entry ({@code startup_64}) in 64-bit mode with RSI = the zero page
 * top     the initrd, page-aligned, as high as RAM below 4 GiB and initrd_addr_max allow
 * </pre>
 */
public final class LinuxBoot {
    public static final long GDT = 0x500;
    public static final long PML4 = 0x1000;
    public static final long PDPT = 0x2000;
    public static final long PAGE_DIRECTORIES = 0x3000;
    public static final long ZERO_PAGE = 0x7000;
    public static final long STACK_TOP = 0x8ff0;
    public static final long CMDLINE = 0x20000;
    public static final long ACPI_BASE = 0xe0000;
    public static final long ACPI_LIMIT = 0x20000;
    public static final long KERNEL_BASE = 0x100000;
    public static final int BOOT_CS = 0x10;
    public static final int BOOT_DS = 0x18;
    /** The boot loader type "undefined" (boot.rst): actovisor has no registered id. */
    private static final int LOADER_TYPE_UNDEFINED = 0xff;
    private static final long PAGE = 4096;

    /** The boot protocol's GDT (__BOOT_CS, __BOOT_DS) and the identity-mapping page tables. */
    public static final LongModeEntry LONG_MODE = new LongModeEntry(GDT, BOOT_CS, BOOT_DS, PML4);
    private static final int MSR_IA32_MISC_ENABLE = 0x1a0;
    private static final long MISC_ENABLE_FAST_STRING = 1;
    private static final int MSR_MTRR_DEF_TYPE = 0x2ff;
    private static final long MTRR_ENABLE = 1L << 11;
    private static final long MTRR_TYPE_WRITE_BACK = 6;

    /** An initrd and where it came from (for messages). */
    public record Initrd(String source, byte[] bytes) {
        public Initrd {
            bytes = bytes.clone();
        }

        @Override
        public byte[] bytes() {
            return bytes.clone();
        }

        public int size() {
            return bytes.length;
        }
    }

    /** Where the initrd goes and the e820 map, once the inputs are known to fit. */
    public record Plan(long initrdAddress, long initrdSize, List<E820Map.Entry> e820) {
        public Plan {
            e820 = List.copyOf(e820);
        }
    }

    /** Where things went, for the vCPU set-up and for reports. */
    public record Loaded(long entry, long zeroPage, long initrdAddress, long initrdSize, long rsdp,
            List<E820Map.Entry> e820) {
        public Loaded {
            e820 = List.copyOf(e820);
        }
    }

    private LinuxBoot() {
    }

    /**
     * Check that {@code kernel}, {@code initrd} and {@code cmdline} fit the kernel's limits and {@code ram} (sorted
     * RAM ranges, the first from 0), and say where the initrd goes. Each error names the file or value and the limit
     * it exceeds. Nothing is written.
     */
    public static Plan plan(List<AddressRange> ram, BzImage kernel, Optional<Initrd> initrd, String cmdline) {
        byte[] cmd = cmdline.getBytes(StandardCharsets.US_ASCII);
        if (cmd.length > kernel.cmdlineMax()) {
            throw new LinuxBootException("the kernel command line is " + cmd.length + " bytes; " + kernel.source()
                    + " accepts at most " + kernel.cmdlineMax() + " (setup_header.cmdline_size)");
        }
        if (!StandardCharsets.US_ASCII.newEncoder().canEncode(cmdline) || cmdline.indexOf('\0') >= 0) {
            throw new LinuxBootException("the kernel command line must be printable ASCII: '" + cmdline + "'");
        }
        long lowEnd = contiguousFromZero(ram);
        Vmlinux vmlinux = kernel.vmlinux();
        long needed = vmlinux.end();
        if (vmlinux.start() < KERNEL_BASE || lowEnd < needed) {
            throw new LinuxBootException("the kernel " + kernel.source() + " occupies guest-physical 0x"
                    + Long.toHexString(vmlinux.start()) + "-0x" + Long.toHexString(needed) + "; RAM from 0 ends at 0x"
                    + Long.toHexString(lowEnd) + " (" + (lowEnd >> 20) + " MiB)");
        }
        long initrdAddress = 0;
        long initrdSize = 0;
        if (initrd.isPresent()) {
            initrdSize = initrd.get().size();
            long top = Math.min(lowEnd, Math.min(kernel.initrdAddrMax() + 1, 1L << 32));
            initrdAddress = (top - initrdSize) & ~(PAGE - 1);
            if (initrdSize > top || initrdAddress < needed) {
                long room = Math.max(0, top - needed);
                throw new LinuxBootException("the initrd " + initrd.get().source() + " is " + initrdSize
                        + " bytes; at most " + room + " fit between the kernel (up to 0x"
                        + Long.toHexString(needed) + ") and the initrd limit 0x" + Long.toHexString(top)
                        + " (the end of RAM below 4 GiB, and initrd_addr_max 0x"
                        + Long.toHexString(kernel.initrdAddrMax()) + ")");
            }
        }
        return new Plan(initrdAddress, initrdSize, E820Map.of(ram));
    }

    /**
     * Check that {@code kernel}, {@code initrd} and {@code cmdline} fit the kernel's limits and this VM's RAM, then
     * write everything into guest memory. Every check runs before the first write, and each error names the file
     * or value and the limit it exceeds.
     *
     * @param ram    the VM's RAM ranges, sorted; the first must start at 0
     * @param vcpus  vCPUs, for the MADT
     * @param virtio virtio-mmio devices, for the DSDT
     */
    public static Loaded load(GuestMemory memory, List<AddressRange> ram, BzImage kernel, Optional<Initrd> initrd,
            String cmdline, int vcpus, List<AcpiTables.VirtioMmioDevice> virtio) {
        Plan plan = plan(ram, kernel, initrd, cmdline);
        long initrdAddress = plan.initrdAddress();
        long initrdSize = plan.initrdSize();
        List<E820Map.Entry> e820 = plan.e820();
        byte[] cmd = cmdline.getBytes(StandardCharsets.US_ASCII);
        Vmlinux vmlinux = kernel.vmlinux();

        writePageTables(memory);
        AcpiTables.Placement acpi = AcpiTables.write(memory, ACPI_BASE, ACPI_LIMIT, vcpus, virtio);
        byte[] cmdWithNul = new byte[cmd.length + 1];
        System.arraycopy(cmd, 0, cmdWithNul, 0, cmd.length);
        memory.write(new GuestAddress(CMDLINE), cmdWithNul);
        vmlinux.load(memory);
        if (initrd.isPresent()) {
            memory.write(new GuestAddress(initrdAddress), initrd.get().bytes());
        }
        memory.write(new GuestAddress(ZERO_PAGE), zeroPage(kernel, initrdAddress, initrdSize, acpi.rsdp(), e820));
        return new Loaded(vmlinux.entry(), ZERO_PAGE, initrdAddress, initrdSize, acpi.rsdp(),
                e820);
    }

    static byte[] zeroPage(BzImage kernel, long initrdAddress, long initrdSize, long rsdp,
            List<E820Map.Entry> e820) {
        byte[] page = new byte[BootParamsAbi.BOOT_PARAMS_SIZE];
        byte[] header = kernel.setupHeader();
        System.arraycopy(header, 0, page, BootParamsAbi.HDR, header.length);
        ByteBuffer b = ByteBuffer.wrap(page).order(ByteOrder.LITTLE_ENDIAN);
        b.put(BootParamsAbi.TYPE_OF_LOADER, (byte) LOADER_TYPE_UNDEFINED);
        b.put(BootParamsAbi.LOADFLAGS, (byte) (b.get(BootParamsAbi.LOADFLAGS) | BootParamsAbi.CAN_USE_HEAP));
        b.putShort(BootParamsAbi.HEAP_END_PTR, (short) 0xfe00);
        b.putInt(BootParamsAbi.CMD_LINE_PTR, (int) CMDLINE);
        b.putInt(BootParamsAbi.EXT_CMD_LINE_PTR, (int) (CMDLINE >>> 32));
        b.putInt(BootParamsAbi.RAMDISK_IMAGE, (int) initrdAddress);
        b.putInt(BootParamsAbi.EXT_RAMDISK_IMAGE, (int) (initrdAddress >>> 32));
        b.putInt(BootParamsAbi.RAMDISK_SIZE, (int) initrdSize);
        b.putInt(BootParamsAbi.EXT_RAMDISK_SIZE, (int) (initrdSize >>> 32));
        b.putLong(BootParamsAbi.ACPI_RSDP_ADDR, rsdp);
        b.put(BootParamsAbi.E820_ENTRIES, (byte) e820.size());
        for (int i = 0; i < e820.size(); i++) {
            int at = BootParamsAbi.E820_TABLE + i * BootParamsAbi.E820_ENTRY_SIZE;
            E820Map.Entry e = e820.get(i);
            b.putLong(at + BootParamsAbi.E820_ADDR, e.address());
            b.putLong(at + BootParamsAbi.E820_SIZE, e.size());
            b.putInt(at + BootParamsAbi.E820_TYPE, e.type());
        }
        return page;
    }

    private static void writePageTables(GuestMemory memory) {
        LONG_MODE.write(memory);
    }

    /**
     * Put the boot vCPU where the 64-bit protocol wants it: long mode with paging, CS = __BOOT_CS, the data segments
     * = __BOOT_DS, interrupts off, RSI = the zero page, RIP = the 64-bit entry; and give it {@code cpuid}.
     */
    public static void enter(KvmVcpu vcpu, CpuidEntries cpuid, Loaded loaded) {
        vcpu.setCpuid(cpuid);
        setMsrs(vcpu);
        LONG_MODE.enter(vcpu);
        long[] regs = new long[Registers.NAMES.length];
        regs[16] = loaded.entry();
        regs[17] = 0x2;
        regs[6] = STACK_TOP;
        regs[4] = loaded.zeroPage();
        vcpu.setRegisters(new Registers(regs));
    }

    /**
     * The MSRs firmware would have set: MTRRs enabled with write-back as the default type (at reset they are off,
     * which makes all memory uncacheable where the hypervisor honours guest MTRRs: a boot then takes minutes) and
     * fast string operations on. Every vCPU needs them, the boot vCPU and the ones Linux starts later.
     */
    public static void setMsrs(KvmVcpu vcpu) {
        vcpu.setMsrs(java.util.Map.of(MSR_MTRR_DEF_TYPE, MTRR_ENABLE | MTRR_TYPE_WRITE_BACK,
                MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING));
    }

    /**
     * The CPUID a Linux guest gets: the host's supported leaves with this vCPU's APIC id and the "hypervisor
     * present" bit (leaf 1 ECX bit 31), which KVM leaves to the VMM: without it Linux does not read KVM's leaves
     * (0x40000000...), so it has no kvm-clock, must calibrate the TSC against the PIT and the delay loop against
     * timer ticks, which fails or hangs where the virtual CPU is slow (nested KVM in the emulated KVM host).
     */
    public static CpuidEntries cpuid(CpuidEntries supported, int apicId) {
        return supported.forApicId(apicId).withEcxBits(1, CPUID_1_ECX_HYPERVISOR);
    }

    /** Leaf 1 ECX bit 31: the CPU is virtual (X86_FEATURE_HYPERVISOR). */
    public static final int CPUID_1_ECX_HYPERVISOR = 1 << 31;

    /**
     * Kernel parameters appended where KVM emulates guest kernel code ({@code Kvm.emulatesGuestKernels()}: a
     * KVM-PVM host). There the guest's CPUID instruction may run natively (AMD has no CPUID faulting), so CPUID
     * cannot hide features; these make Linux itself leave alone the instructions KVM's emulator lacks: XSAVE/XRSTOR
     * ({@code noxsave}), CMPXCHG16B, POPCNT and RDRAND ({@code clearcpuid=} X86_FEATURE_CX16 = 4*32+13,
     * POPCNT = 4*32+23, RDRAND = 4*32+30) and RDFSBASE/WRFSBASE ({@code nofsgsbase}).
     */
    public static final String EMULATED_KVM_PARAMETERS = "noxsave clearcpuid=141,151,158 nofsgsbase";

    private static long contiguousFromZero(List<AddressRange> ram) {
        long end = 0;
        for (AddressRange r : ram) {
            if (r.base() == end) {
                end = r.end();
            }
        }
        if (end == 0) {
            throw new LinuxBootException("a Linux guest needs RAM at guest-physical address 0");
        }
        return end;
    }

}
