package io.actovisor.devices.boot;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.devices.boot.linux.LinuxBoot;
import io.actovisor.kernel.kvm.KvmAbi;
import io.actovisor.memory.FlatView;
import io.actovisor.memory.GuestAddress;
import io.actovisor.memory.GuestMemory;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.MemoryRegion;
import io.actovisor.memory.sys.NativeBuffer;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * The one long-mode entry of the firmware boot and the Linux boot: the GDT's descriptors at their selectors, the
 * identity map of the first 4 GiB, and the special registers, against the values the x86 manuals give.
 */
class LongModeEntryTest {
    private static final long CODE_64 = 0x00af9b000000ffffL;
    private static final long DATA_FLAT = 0x00cf93000000ffffL;

    @Test
    void theFirmwareAndLinuxEntriesSitWhereTheirLayoutsSay() {
        assertEquals(new LongModeEntry(0x500, 0x08, 0x10, 0x1000), BootLayout.LONG_MODE);
        assertEquals(new LongModeEntry(0x500, 0x10, 0x18, 0x1000), LinuxBoot.LONG_MODE);
        assertEquals(BootLayout.PML4, BootLayout.LONG_MODE.pml4());
        assertEquals(BootLayout.PDPT, BootLayout.LONG_MODE.pdpt());
        assertEquals(BootLayout.PAGE_DIRECTORIES, BootLayout.LONG_MODE.pageDirectory(0));
        assertEquals(LinuxBoot.PDPT, LinuxBoot.LONG_MODE.pdpt());
        assertEquals(LinuxBoot.PAGE_DIRECTORIES, LinuxBoot.LONG_MODE.pageDirectory(0));
        assertTrue(BootLayout.PML4 + LongModeEntry.PAGE_TABLES_SIZE <= BootLayout.BOOT_INFO,
                "the page tables end below the boot-info page");
        assertTrue(LinuxBoot.PML4 + LongModeEntry.PAGE_TABLES_SIZE <= LinuxBoot.ZERO_PAGE,
                "the page tables end below the zero page");
    }

    @Test
    void theGdtHoldsNullDescriptorsThenCodeAndDataAtTheirSelectors() {
        try (HostMemory ram = HostMemory.anonymous("long-mode-gdt", 1L << 20)) {
            GuestMemory memory = memory(ram);
            memory.writeLong(new GuestAddress(0x500), -1L); // what a reboot may find there
            memory.writeLong(new GuestAddress(0x508), -1L);
            LinuxBoot.LONG_MODE.write(memory);
            assertEquals(0, memory.readLong(new GuestAddress(0x500)));
            assertEquals(0, memory.readLong(new GuestAddress(0x508)));
            assertEquals(CODE_64, memory.readLong(new GuestAddress(0x510)));
            assertEquals(DATA_FLAT, memory.readLong(new GuestAddress(0x518)));
            assertEquals(31, LinuxBoot.LONG_MODE.gdtLimit());
            assertEquals(23, BootLayout.LONG_MODE.gdtLimit());
        }
    }

    @Test
    void thePageTablesIdentityMapTheFirstFourGibWithTwoMibPages() {
        try (HostMemory ram = HostMemory.anonymous("long-mode-tables", 1L << 20)) {
            GuestMemory memory = memory(ram);
            LongModeEntry entry = new LongModeEntry(0x500, 0x08, 0x10, 0x40000);
            entry.write(memory);
            assertEquals(0x41000L | 0x3, memory.readLong(new GuestAddress(0x40000)), "PML4[0] -> PDPT");
            assertEquals(0, memory.readLong(new GuestAddress(0x40008)), "PML4[1] is not present");
            for (int gib = 0; gib < 4; gib++) {
                assertEquals((0x42000L + gib * 0x1000L) | 0x3, memory.readLong(new GuestAddress(0x41000 + 8L * gib)));
            }
            assertEquals(0, memory.readLong(new GuestAddress(0x41000 + 8L * 4)), "nothing above 4 GiB");
            for (long gpa : new long[] {0, 2L << 20, 0xfee00000L, 0xffe00000L, 3L << 30}) {
                int gib = (int) (gpa >>> 30);
                int index = (int) ((gpa >>> 21) & 511);
                long pde = memory.readLong(new GuestAddress(entry.pageDirectory(gib) + 8L * index));
                assertEquals(gpa | 0x83, pde, "2 MiB page at 0x" + Long.toHexString(gpa) + " maps to itself");
            }
        }
    }

    @Test
    void theSpecialRegistersTurnOnPagingAndLongModeWithFlatSegments() {
        try (NativeBuffer sregs = NativeBuffer.allocate(KvmAbi.KVM_SREGS_SIZE)) {
            LinuxBoot.LONG_MODE.writeSpecialRegisters(sregs);
            assertEquals(0x80000011L, sregs.getLong(KvmAbi.SREGS_CR0), "PE, ET, PG");
            assertEquals(0x20L, sregs.getLong(KvmAbi.SREGS_CR4), "PAE");
            assertEquals(0x500L, sregs.getLong(KvmAbi.SREGS_EFER), "LME, LMA");
            assertEquals(0x1000L, sregs.getLong(KvmAbi.SREGS_CR3));
            assertEquals(0x500L, sregs.getLong(KvmAbi.SREGS_GDT + KvmAbi.DTABLE_BASE));
            assertEquals(31, sregs.getShort(KvmAbi.SREGS_GDT + KvmAbi.DTABLE_LIMIT));
            assertEquals(0x10, sregs.getShort(KvmAbi.SREGS_CS + KvmAbi.SEG_SELECTOR));
            assertEquals(11, sregs.getByte(KvmAbi.SREGS_CS + KvmAbi.SEG_TYPE));
            assertEquals(1, sregs.getByte(KvmAbi.SREGS_CS + KvmAbi.SEG_L), "64-bit code");
            assertEquals(0, sregs.getByte(KvmAbi.SREGS_CS + KvmAbi.SEG_DB));
            for (int data : new int[] {KvmAbi.SREGS_DS, KvmAbi.SREGS_ES, KvmAbi.SREGS_FS, KvmAbi.SREGS_GS,
                KvmAbi.SREGS_SS}) {
                assertEquals(0x18, sregs.getShort(data + KvmAbi.SEG_SELECTOR));
                assertEquals(3, sregs.getByte(data + KvmAbi.SEG_TYPE));
                assertEquals(0, sregs.getByte(data + KvmAbi.SEG_L));
                assertEquals(1, sregs.getByte(data + KvmAbi.SEG_DB));
                assertEquals(0xffffffff, sregs.getInt(data + KvmAbi.SEG_LIMIT));
                assertEquals(1, sregs.getByte(data + KvmAbi.SEG_PRESENT));
            }
        }
    }

    @Test
    void badSelectorsAndAddressesAreRefusedByName() {
        assertEquals("codeSelector 0x0 is not a GDT selector (a non-zero multiple of 8 below 0x10000)",
                assertThrows(IllegalArgumentException.class, () -> new LongModeEntry(0x500, 0, 0x10, 0x1000))
                        .getMessage());
        assertEquals("dataSelector 0x13 is not a GDT selector (a non-zero multiple of 8 below 0x10000)",
                assertThrows(IllegalArgumentException.class, () -> new LongModeEntry(0x500, 0x08, 0x13, 0x1000))
                        .getMessage());
        assertTrue(assertThrows(IllegalArgumentException.class, () -> new LongModeEntry(0x500, 0x08, 0x08, 0x1000))
                .getMessage().startsWith("codeSelector and dataSelector are both 0x8"));
        assertEquals("pageTables 0x1800 is not a 4 KiB aligned address",
                assertThrows(IllegalArgumentException.class, () -> new LongModeEntry(0x500, 0x08, 0x10, 0x1800))
                        .getMessage());
        assertEquals("gdt 0x504 is not an 8-byte aligned address",
                assertThrows(IllegalArgumentException.class, () -> new LongModeEntry(0x504, 0x08, 0x10, 0x1000))
                        .getMessage());
        assertEquals("the GDT at 0x2000 overlaps the page tables at 0x1000",
                assertThrows(IllegalArgumentException.class, () -> new LongModeEntry(0x2000, 0x08, 0x10, 0x1000))
                        .getMessage());
        assertThrows(IllegalArgumentException.class, () -> BootLayout.LONG_MODE.pageDirectory(4));
    }

    private static GuestMemory memory(HostMemory ram) {
        return GuestMemory.of(FlatView.of(List.of(MemoryRegion.ram("ram", GuestAddress.ZERO, ram))));
    }
}
