package io.actovisor.memory;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.memory.sys.Posix;
import io.actovisor.memory.testing.NativeRequirement;
import java.util.List;
import java.util.Optional;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Guest-physical reads and writes through a flat view onto real host memory. The layout puts two RAM regions next
 * to each other in the guest but apart in the host, so an access that spans them must be split at the right byte:
 * <pre>
 *   0x0000-0x1fff RAM "low"  (host page 0-1 of ram)
 *   0x2000-0x2fff RAM "high" (host page 3 of ram)
 *   0x3000-0x3fff ROM "bios" (host page 0 of rom)
 *   0x4000-0x4fff hole
 *   0x5000-0x5fff MMIO "uart"
 * </pre>
 */
class GuestMemoryTest {
    private static final long PAGE = HostMemory.PAGE_SIZE;

    private HostMemory ram;
    private HostMemory rom;
    private GuestMemory guest;

    @BeforeAll
    static void native_layer_is_there() {
        NativeRequirement.require("the libc binding", Posix.unavailabilityCause());
    }

    @BeforeEach
    void map() {
        ram = HostMemory.anonymous("guest-ram", 4 * PAGE);
        rom = HostMemory.anonymous("guest-rom", PAGE);
        guest = GuestMemory.of(FlatView.of(List.of(
                MemoryRegion.ram("low", AddressRange.of(0, 2 * PAGE), ram, 0),
                MemoryRegion.ram("high", AddressRange.of(2 * PAGE, PAGE), ram, 3 * PAGE),
                MemoryRegion.rom("bios", AddressRange.of(3 * PAGE, PAGE), rom, 0),
                MemoryRegion.mmio("uart", AddressRange.of(5 * PAGE, PAGE), "serial0"))));
    }

    @AfterEach
    void unmap() {
        ram.close();
        rom.close();
    }

    private HostAddress ramAt(long offset) {
        return ram.base().checkedAdd(offset);
    }

    @Test
    void values_are_little_endian_and_land_at_the_host_address_behind_the_gpa() {
        guest.writeLong(GuestAddress.of(0x10), 0x0102030405060708L);
        assertArrayEquals(new byte[] {8, 7, 6, 5, 4, 3, 2, 1}, ram.read(ramAt(0x10), 8));
        assertEquals(0x0102030405060708L, guest.readLong(GuestAddress.of(0x10)));
        assertEquals(0x05060708, guest.readInt(GuestAddress.of(0x10)));
        assertEquals((short) 0x0708, guest.readShort(GuestAddress.of(0x10)));
        assertEquals(0x08, guest.readByte(GuestAddress.of(0x10)));

        guest.writeInt(GuestAddress.of(0x2010), 0xcafebabe);
        assertArrayEquals(new byte[] {(byte) 0xbe, (byte) 0xba, (byte) 0xfe, (byte) 0xca},
                ram.read(ramAt(3 * PAGE + 0x10), 4));
        guest.writeShort(GuestAddress.of(0x2020), (short) 0x1234);
        assertArrayEquals(new byte[] {0x34, 0x12}, ram.read(ramAt(3 * PAGE + 0x20), 2));
        guest.writeByte(GuestAddress.of(0x2030), (byte) 0x7f);
        assertEquals(0x7f, ram.readByte(ramAt(3 * PAGE + 0x30)));
        assertEquals(0, ram.readByte(ramAt(2 * PAGE + 0x30)), "host page 2 is not behind any guest address");
    }

    @Test
    void an_access_spanning_two_ram_regions_is_split_where_the_first_ends() {
        byte[] data = new byte[16];
        for (int i = 0; i < data.length; i++) {
            data[i] = (byte) (i + 1);
        }
        byte[] src = new byte[20];
        System.arraycopy(data, 0, src, 4, 16);
        guest.write(GuestAddress.of(2 * PAGE - 8), src, 4, 16);

        assertArrayEquals(new byte[] {1, 2, 3, 4, 5, 6, 7, 8}, ram.read(ramAt(2 * PAGE - 8), 8));
        assertArrayEquals(new byte[] {9, 10, 11, 12, 13, 14, 15, 16}, ram.read(ramAt(3 * PAGE), 8));

        byte[] dst = new byte[19];
        guest.read(GuestAddress.of(2 * PAGE - 8), dst, 3, 16);
        byte[] expected = new byte[19];
        System.arraycopy(data, 0, expected, 3, 16);
        assertArrayEquals(expected, dst);
        assertArrayEquals(data, guest.read(GuestAddress.of(2 * PAGE - 8), 16));
    }

    @Test
    void rom_reads_but_refuses_writes_and_a_refused_write_changes_nothing_even_in_ram() {
        rom.write(rom.base(), new byte[] {0x55, (byte) 0xaa});
        assertEquals((short) 0xaa55, guest.readShort(GuestAddress.of(3 * PAGE)));

        GuestMemoryException e = assertThrows(GuestMemoryException.class,
                () -> guest.writeByte(GuestAddress.of(3 * PAGE + 1), (byte) 0));
        assertEquals("guest access of 1 bytes at GPA 0x3001: GPA 0x3001 is read-only (bios)", e.getMessage());

        guest.write(GuestAddress.of(3 * PAGE - 4), new byte[] {1, 2, 3, 4});
        GuestMemoryException spanning = assertThrows(GuestMemoryException.class,
                () -> guest.write(GuestAddress.of(3 * PAGE - 4), new byte[] {9, 9, 9, 9, 9, 9, 9, 9}));
        assertEquals(GuestAddress.of(3 * PAGE - 4), spanning.address());
        assertEquals(8, spanning.length());
        assertArrayEquals(new byte[] {1, 2, 3, 4}, guest.read(GuestAddress.of(3 * PAGE - 4), 4));
        assertArrayEquals(new byte[] {0x55, (byte) 0xaa}, rom.read(rom.base(), 2));
    }

    @Test
    void mmio_and_holes_are_not_memory_and_say_where_the_access_went() {
        GuestMemoryException hole = assertThrows(GuestMemoryException.class,
                () -> guest.readInt(GuestAddress.of(4 * PAGE + 8)));
        assertEquals("guest access of 4 bytes at GPA 0x4008: no memory at GPA 0x4008", hole.getMessage());
        GuestMemoryException intoMmio = assertThrows(GuestMemoryException.class,
                () -> guest.read(GuestAddress.of(5 * PAGE - 2), 4));
        assertEquals("guest access of 4 bytes at GPA 0x4ffe: no memory at GPA 0x4ffe", intoMmio.getMessage());
        GuestMemoryException uart = assertThrows(GuestMemoryException.class,
                () -> guest.writeByte(GuestAddress.of(5 * PAGE), (byte) 1));
        assertEquals("guest access of 1 bytes at GPA 0x5000: GPA 0x5000 is MMIO (uart)", uart.getMessage());
    }

    @Test
    void is_memory_holds_only_when_every_byte_is_ram_or_rom() {
        assertTrue(guest.isMemory(GuestAddress.ZERO, 4 * PAGE));
        assertTrue(guest.isMemory(GuestAddress.of(3 * PAGE), PAGE));
        assertFalse(guest.isMemory(GuestAddress.of(4 * PAGE - 1), 2));
        assertFalse(guest.isMemory(GuestAddress.of(5 * PAGE), 1));
        assertFalse(guest.isMemory(GuestAddress.ZERO, -1));
        assertFalse(guest.isMemory(GuestAddress.ZERO, Integer.MAX_VALUE + 1L));
        assertFalse(guest.isMemory(GuestAddress.ZERO, Integer.MAX_VALUE), "runs into the hole at 0x4000");
    }

    @Test
    void the_longest_possible_access_is_2_gib_minus_one_byte() {
        // MAP_NORESERVE: nothing here touches the 2 GiB, so nothing of it is ever backed.
        try (HostMemory big = HostMemory.anonymous("big-guest", 1L << 31)) {
            GuestMemory g = GuestMemory.of(FlatView.of(List.of(MemoryRegion.ram("ram", GuestAddress.ZERO, big))));
            assertTrue(g.isMemory(GuestAddress.ZERO, Integer.MAX_VALUE));
            assertFalse(g.isMemory(GuestAddress.ZERO, Integer.MAX_VALUE + 1L));
        }
    }

    @Test
    void impossible_lengths_and_accesses_wrapping_past_2_to_the_64_are_refused() {
        GuestMemoryException negative = assertThrows(GuestMemoryException.class,
                () -> guest.read(GuestAddress.ZERO, new byte[4], 0, -1));
        assertEquals("guest access of -1 bytes at GPA 0x0: impossible length", negative.getMessage());
        GuestMemoryException wraps = assertThrows(GuestMemoryException.class,
                () -> guest.read(GuestAddress.of(-4L), 8));
        assertEquals("guest access of 8 bytes at GPA 0xfffffffffffffffc: wraps past the end of the address space",
                wraps.getMessage());
        // The last 4 bytes of the space do not wrap: they are refused only because nothing is mapped there.
        GuestMemoryException top = assertThrows(GuestMemoryException.class,
                () -> guest.read(GuestAddress.of(-4L), 4));
        assertTrue(top.getMessage().endsWith("no memory at GPA 0xfffffffffffffffc"), top.getMessage());
        assertArrayEquals(new byte[0], guest.read(GuestAddress.of(4 * PAGE), 0));
    }

    @Test
    void host_address_resolves_ram_and_rom_only() {
        assertEquals(Optional.of(ramAt(0x123)), guest.hostAddress(GuestAddress.of(0x123)));
        assertEquals(Optional.of(ramAt(3 * PAGE + 0x10)), guest.hostAddress(GuestAddress.of(2 * PAGE + 0x10)));
        assertEquals(Optional.of(rom.base().checkedAdd(5)), guest.hostAddress(GuestAddress.of(3 * PAGE + 5)));
        assertEquals(Optional.empty(), guest.hostAddress(GuestAddress.of(4 * PAGE)));
        assertEquals(Optional.empty(), guest.hostAddress(GuestAddress.of(5 * PAGE)));
        FlatView view = guest.view();
        assertSame(view, new GuestMemory(view).view());
    }

    @Test
    void a_section_maps_its_guest_range_to_the_host_from_its_offset_in_the_region() {
        Section high = guest.view().sectionAt(GuestAddress.of(2 * PAGE)).orElseThrow();
        assertEquals(RegionKind.RAM, high.kind());
        assertEquals(GuestAddress.of(2 * PAGE), high.guestBase());
        assertEquals(Optional.of(ramAt(3 * PAGE)), high.hostBase());
        assertEquals(ramAt(3 * PAGE + 7), high.hostAddress(GuestAddress.of(2 * PAGE + 7)));
        IllegalArgumentException outside = assertThrows(IllegalArgumentException.class,
                () -> high.hostAddress(GuestAddress.of(3 * PAGE)));
        assertTrue(outside.getMessage().startsWith("GPA 0x3000 is outside section [0x2000, 0x2fff] high+0x0 RAM"),
                outside.getMessage());
        Section uart = guest.view().sectionAt(GuestAddress.of(5 * PAGE)).orElseThrow();
        assertEquals(Optional.empty(), uart.hostBase());
        assertTrue(high.compareTo(uart) < 0);
        assertTrue(uart.compareTo(high) > 0);
        assertEquals(0, high.compareTo(high));

        MemoryRegion low = guest.view().sectionAt(GuestAddress.ZERO).orElseThrow().region();
        // A section that starts part-way into its region.
        Section tail = new Section(AddressRange.of(PAGE, PAGE), low, PAGE);
        assertEquals(Optional.of(ramAt(PAGE)), tail.hostBase());
    }

    @Test
    void a_region_translates_only_its_own_addresses_and_only_with_host_memory() {
        MemoryRegion high = MemoryRegion.ram("high", AddressRange.of(2 * PAGE, PAGE), ram, 3 * PAGE);
        assertEquals(ramAt(3 * PAGE + 1), high.hostAddress(GuestAddress.of(2 * PAGE + 1)));
        IllegalArgumentException outside = assertThrows(IllegalArgumentException.class,
                () -> high.hostAddress(GuestAddress.of(PAGE)));
        assertEquals("GPA 0x1000 is outside region high [0x2000, 0x2fff]", outside.getMessage());
        MemoryRegion uart = MemoryRegion.mmio("uart", AddressRange.of(5 * PAGE, PAGE), "serial0");
        IllegalStateException noHost = assertThrows(IllegalStateException.class,
                () -> uart.hostAddress(GuestAddress.of(5 * PAGE)));
        assertEquals("region uart (MMIO) has no host memory", noHost.getMessage());

        assertEquals("high(RAM [0x2000, 0x2fff] @guest-ram+0x3000)", high.toString());
        assertEquals("uart(MMIO [0x5000, 0x5fff] prio 2 dev serial0)", uart.withPriority(2).toString());
        MemoryRegion whole = MemoryRegion.ram("whole", GuestAddress.of(PAGE), ram);
        assertEquals(AddressRange.of(PAGE, 4 * PAGE), whole.range());
        assertEquals(ramAt(4 * PAGE - 1), whole.hostAddress(GuestAddress.of(5 * PAGE - 1)));
    }

    @Test
    void a_region_must_fit_in_its_host_memory_and_rom_is_always_read_only() {
        // Exactly the room left after the offset fits; one more page does not.
        MemoryRegion fits = MemoryRegion.ram("fits", AddressRange.of(0, 3 * PAGE), ram, PAGE);
        assertEquals(3 * PAGE, fits.range().size());
        IllegalArgumentException tooBig = assertThrows(IllegalArgumentException.class,
                () -> MemoryRegion.ram("big", AddressRange.of(0, 4 * PAGE), ram, PAGE));
        assertEquals("region big of size 0x4000 does not fit in host memory guest-ram+0x1000 (0x3000 bytes left)",
                tooBig.getMessage());
        MemoryRegion writableRom = new MemoryRegion("rom", RegionKind.ROM, AddressRange.of(0, PAGE), 0,
                Optional.of(new HostBacking(rom, 0)), false, Optional.empty());
        assertTrue(writableRom.readOnly());
        MemoryRegion ramRegion = new MemoryRegion("ram", RegionKind.RAM, AddressRange.of(0, PAGE), 0,
                Optional.of(new HostBacking(ram, 0)), false, Optional.empty());
        assertFalse(ramRegion.readOnly());
    }

    @Test
    void a_backing_offset_must_lie_inside_its_host_memory() {
        HostBacking last = new HostBacking(ram, 4 * PAGE - 1);
        assertEquals(ramAt(4 * PAGE - 1), last.hostAddress(0));
        assertEquals(ramAt(4 * PAGE - 1), new HostBacking(ram, 4 * PAGE - 3).hostAddress(2));
        IllegalArgumentException past = assertThrows(IllegalArgumentException.class,
                () -> new HostBacking(ram, 4 * PAGE));
        assertEquals("backing offset 0x4000 is outside host memory guest-ram of size 0x4000", past.getMessage());
        assertThrows(IllegalArgumentException.class, () -> new HostBacking(ram, -1));
        assertEquals("guest-ram+0x10", new HostBacking(ram, 0x10).toString());
        assertEquals(new HostBacking(ram, 0x10), new HostBacking(ram, 0x10));
        assertEquals(new HostBacking(ram, 0x10).hashCode(), new HostBacking(ram, 0x10).hashCode());
        assertFalse(new HostBacking(ram, 0x10).equals(new HostBacking(ram, 0x20)));
        assertFalse(new HostBacking(ram, 0).equals(new HostBacking(rom, 0)));
    }
}
