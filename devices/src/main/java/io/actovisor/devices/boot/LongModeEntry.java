package io.actovisor.devices.boot;

import io.actovisor.kernel.kvm.KvmAbi;
import io.actovisor.kernel.kvm.KvmVcpu;
import io.actovisor.memory.GuestAddress;
import io.actovisor.memory.GuestMemory;
import io.actovisor.memory.sys.NativeBuffer;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * How a vCPU starts in 64-bit long mode without any 16- or 32-bit code of the guest's: a flat GDT, page tables that
 * identity-map the first 4 GiB with 2 MiB pages (RAM and the MMIO hole alike), and the control registers that turn
 * paging and long mode on. The firmware boot ({@link BootLayout}) and the Linux 64-bit boot protocol
 * ({@link io.actovisor.devices.boot.linux.LinuxBoot}) differ only in where the GDT's two descriptors sit.
 *
 * <pre>
 * gdt                        null descriptors up to the code and data selectors, a 64-bit code descriptor at
 *                            {@code codeSelector}, a flat data descriptor at {@code dataSelector}
 * pageTables + 0x0000        PML4 (one entry: the PDPT)
 * pageTables + 0x1000        PDPT (four entries: the page directories)
 * pageTables + 0x2000-0x5fff four page directories of 512 2 MiB pages each
 * </pre>
 *
 * @param gdt          guest-physical address of the GDT, 8-byte aligned
 * @param codeSelector the selector of the 64-bit code segment (CS), a non-zero multiple of 8
 * @param dataSelector the selector of the data segments (DS, ES, FS, GS, SS), a non-zero multiple of 8
 * @param pageTables   guest-physical address of the PML4, 4 KiB aligned; the tables take {@link #PAGE_TABLES_SIZE}
 */
public record LongModeEntry(long gdt, int codeSelector, int dataSelector, long pageTables) {
    /** Bytes the page tables take from {@link #pageTables()}: PML4, PDPT and four page directories. */
    public static final long PAGE_TABLES_SIZE = 6 * 0x1000L;
    /** CR0: protection, the extension type bit a real CPU hard-wires, paging. */
    public static final long CR0 = 1L | 1L << 4 | 1L << 31;
    /** CR4: physical address extension, which long mode requires. */
    public static final long CR4 = 1L << 5;
    /** EFER: long mode enabled and active. */
    public static final long EFER = 1L << 8 | 1L << 10;

    private static final long TABLE = 0x1000;
    private static final int GIB_MAPPED = 4;
    private static final long PRESENT_WRITABLE = 0x3;
    private static final long LARGE_PAGE = 0x80;
    private static final long CODE_64 = 0x00af9b000000ffffL;
    private static final long DATA_FLAT = 0x00cf93000000ffffL;
    private static final int CODE_TYPE = 11;
    private static final int DATA_TYPE = 3;

    public LongModeEntry {
        if (gdt < 0 || gdt % 8 != 0) {
            throw new IllegalArgumentException("gdt 0x" + Long.toHexString(gdt) + " is not an 8-byte aligned address");
        }
        checkSelector("codeSelector", codeSelector);
        checkSelector("dataSelector", dataSelector);
        if (codeSelector == dataSelector) {
            throw new IllegalArgumentException("codeSelector and dataSelector are both 0x"
                    + Integer.toHexString(codeSelector) + "; code and data need descriptors of their own");
        }
        if (pageTables < 0 || pageTables % TABLE != 0) {
            throw new IllegalArgumentException("pageTables 0x" + Long.toHexString(pageTables)
                    + " is not a 4 KiB aligned address");
        }
        long gdtEnd = gdt + gdtLimit(codeSelector, dataSelector) + 1;
        if (gdt < pageTables + PAGE_TABLES_SIZE && pageTables < gdtEnd) {
            throw new IllegalArgumentException("the GDT at 0x" + Long.toHexString(gdt) + " overlaps the page tables at 0x"
                    + Long.toHexString(pageTables));
        }
    }

    private static void checkSelector(String field, int selector) {
        if (selector <= 0 || selector % 8 != 0 || selector > 0xfff8) {
            throw new IllegalArgumentException(field + " 0x" + Integer.toHexString(selector)
                    + " is not a GDT selector (a non-zero multiple of 8 below 0x10000)");
        }
    }

    private static int gdtLimit(int codeSelector, int dataSelector) {
        return Math.max(codeSelector, dataSelector) + 7;
    }

    /** The PML4's address ({@code CR3}). */
    public long pml4() {
        return pageTables;
    }

    /** The page-directory-pointer table's address. */
    public long pdpt() {
        return pageTables + TABLE;
    }

    /** The address of the page directory that maps GiB {@code gib} (0 to 3). */
    public long pageDirectory(int gib) {
        if (gib < 0 || gib >= GIB_MAPPED) {
            throw new IllegalArgumentException("gib " + gib + " is not one of the " + GIB_MAPPED + " mapped GiB");
        }
        return pageTables + (2L + gib) * TABLE;
    }

    /** The GDT's limit (its size in bytes less one), as {@code GDTR} takes it. */
    public int gdtLimit() {
        return gdtLimit(codeSelector, dataSelector);
    }

    /** Write the GDT and the page tables into guest memory. */
    public void write(GuestMemory memory) {
        byte[] table = new byte[gdtLimit() + 1];
        ByteBuffer descriptors = ByteBuffer.wrap(table).order(ByteOrder.LITTLE_ENDIAN);
        descriptors.putLong(codeSelector, CODE_64);
        descriptors.putLong(dataSelector, DATA_FLAT);
        memory.write(new GuestAddress(gdt), table);
        byte[] pml4 = new byte[(int) TABLE];
        ByteBuffer.wrap(pml4).order(ByteOrder.LITTLE_ENDIAN).putLong(0, pdpt() | PRESENT_WRITABLE);
        memory.write(new GuestAddress(pml4()), pml4);
        byte[] pdpt = new byte[(int) TABLE];
        ByteBuffer pointers = ByteBuffer.wrap(pdpt).order(ByteOrder.LITTLE_ENDIAN);
        for (int gib = 0; gib < GIB_MAPPED; gib++) {
            pointers.putLong(8 * gib, pageDirectory(gib) | PRESENT_WRITABLE);
            byte[] directory = new byte[(int) TABLE];
            ByteBuffer entries = ByteBuffer.wrap(directory).order(ByteOrder.LITTLE_ENDIAN);
            for (int entry = 0; entry < 512; entry++) {
                long frame = ((long) gib << 30) + ((long) entry << 21);
                entries.putLong(8 * entry, frame | PRESENT_WRITABLE | LARGE_PAGE);
            }
            memory.write(new GuestAddress(pageDirectory(gib)), directory);
        }
        memory.write(new GuestAddress(pdpt()), pdpt);
    }

    /**
     * Put {@code vcpu} in long mode with these tables: CS and the data segments flat at their selectors, GDTR, CR3,
     * CR4, CR0 and EFER. Its general registers (entry point, stack, arguments) are the caller's.
     */
    public void enter(KvmVcpu vcpu) {
        try (NativeBuffer sregs = vcpu.specialRegisters()) {
            writeSpecialRegisters(sregs);
            vcpu.setSpecialRegisters(sregs);
        }
    }

    /** What {@link #enter} writes into a {@code struct kvm_sregs}, leaving the rest of it as it is. */
    public void writeSpecialRegisters(NativeBuffer sregs) {
        segment(sregs, KvmAbi.SREGS_CS, codeSelector, CODE_TYPE, true);
        for (int data : new int[] {KvmAbi.SREGS_DS, KvmAbi.SREGS_ES, KvmAbi.SREGS_FS, KvmAbi.SREGS_GS,
            KvmAbi.SREGS_SS}) {
            segment(sregs, data, dataSelector, DATA_TYPE, false);
        }
        sregs.putLong(KvmAbi.SREGS_GDT + KvmAbi.DTABLE_BASE, gdt)
                .putShort(KvmAbi.SREGS_GDT + KvmAbi.DTABLE_LIMIT, (short) gdtLimit());
        sregs.putLong(KvmAbi.SREGS_CR3, pml4())
                .putLong(KvmAbi.SREGS_CR4, CR4)
                .putLong(KvmAbi.SREGS_CR0, CR0)
                .putLong(KvmAbi.SREGS_EFER, EFER);
    }

    /**
     * Writes a flat 64-bit segment (base 0, 4 GiB limit, ring 0) into {@code sregs} at {@code at}: a long-mode code
     * segment when {@code code}, else a data segment.
     */
    private static void segment(NativeBuffer sregs, int at, int selector, int type, boolean code) {
        sregs.putLong(at + KvmAbi.SEG_BASE, 0)
                .putInt(at + KvmAbi.SEG_LIMIT, 0xffffffff)
                .putShort(at + KvmAbi.SEG_SELECTOR, (short) selector)
                .putByte(at + KvmAbi.SEG_TYPE, (byte) type)
                .putByte(at + KvmAbi.SEG_PRESENT, (byte) 1)
                .putByte(at + KvmAbi.SEG_DPL, (byte) 0)
                .putByte(at + KvmAbi.SEG_DB, (byte) (code ? 0 : 1))
                .putByte(at + KvmAbi.SEG_S, (byte) 1)
                .putByte(at + KvmAbi.SEG_L, (byte) (code ? 1 : 0))
                .putByte(at + KvmAbi.SEG_G, (byte) 1)
                .putByte(at + KvmAbi.SEG_AVL, (byte) 0)
                .putByte(at + KvmAbi.SEG_UNUSABLE, (byte) 0);
    }
}
