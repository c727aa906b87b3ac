package io.actovisor.memory;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import org.junit.jupiter.api.Test;

/** Address and range arithmetic at its edges: equal ends, touching ranges, the top of the 64-bit space. */
class AddressArithmeticTest {
    @Test
    void ranges_that_touch_overlap_and_ranges_that_abut_do_not() {
        AddressRange low = AddressRange.of(0, 0x1000);
        assertTrue(low.overlaps(AddressRange.inclusive(0xfff, 0x2000)));
        assertTrue(AddressRange.inclusive(0xfff, 0x2000).overlaps(low));
        assertFalse(low.overlaps(AddressRange.of(0x1000, 0x1000)));
        assertFalse(AddressRange.of(0x1000, 0x1000).overlaps(low));
        assertEquals(Optional.of(AddressRange.inclusive(0xfff, 0xfff)), low.intersect(AddressRange.of(0xfff, 8)));
        assertEquals(Optional.empty(), low.intersect(AddressRange.of(0x1000, 8)));
    }

    @Test
    void a_range_knows_its_ends_and_orders_by_base_then_size() {
        AddressRange r = AddressRange.of(GuestAddress.of(0x1000), 0x1000);
        assertEquals(AddressRange.of(0x1000, 0x1000), r);
        assertEquals(0x2000, r.end());
        assertEquals(0x1fff, r.last());
        assertEquals(GuestAddress.of(0x1000), r.guestBase());
        assertEquals(AddressRange.of(0x5000, 0x1000), r.withBase(0x5000));
        assertEquals("[0x1000, 0x1fff]", r.toString());
        assertEquals(AddressRange.of(7, 1), AddressRange.inclusive(7, 7));
        assertThrows(IllegalArgumentException.class, () -> AddressRange.inclusive(8, 7));
        assertTrue(r.compareTo(AddressRange.of(0x1000, 0x2000)) < 0);
        assertTrue(AddressRange.of(0x1000, 0x2000).compareTo(r) > 0);
        assertTrue(r.compareTo(AddressRange.of(0x800, 0x4000)) > 0);
        assertEquals(0, r.compareTo(AddressRange.of(0x1000, 0x1000)));
        assertThrows(ArithmeticException.class, () -> AddressRange.of(-0x1000L, 0x1000).end());
    }

    @Test
    void align_inward_keeps_aligned_ranges_whole_and_refuses_odd_alignments() {
        AddressRange aligned = AddressRange.of(0x1000, 0x2000);
        assertEquals(Optional.of(aligned), aligned.alignInward(0x1000));
        assertEquals(Optional.of(AddressRange.of(0x2000, 0x1000)), AddressRange.of(0x1001, 0x2ffe).alignInward(0x1000));
        AddressRange top = AddressRange.of(0xffff_ffff_ffff_f000L, 0x1000);
        assertEquals(Optional.of(top), top.alignInward(0x1000));
        assertEquals(Optional.empty(), AddressRange.of(0xffff_ffff_ffff_f001L, 0xfff).alignInward(0x1000));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> aligned.alignInward(3));
        assertEquals("alignment 0x3 is not a power of two", e.getMessage());
    }

    @Test
    void guest_addresses_subtract_align_and_measure_distances() {
        GuestAddress a = GuestAddress.of(0x1234);
        assertEquals(GuestAddress.of(0x1233), a.checkedSub(1));
        assertEquals(0x234, a.offsetFrom(GuestAddress.of(0x1000)));
        assertEquals(GuestAddress.of(0x1000), a.alignDown(0x1000));
        assertEquals(GuestAddress.of(0x2000), a.alignUp(0x1000));
        assertEquals(GuestAddress.of(0x1000), GuestAddress.of(0x1000).alignUp(0x1000));
        assertTrue(GuestAddress.of(0x1000).isAligned(0x1000));
        assertFalse(a.isAligned(0x1000));
        assertThrows(IllegalArgumentException.class, () -> a.alignDown(3));
        assertThrows(IllegalArgumentException.class, () -> a.isAligned(6));
        assertEquals("GPA 0x1234", a.toString());
    }

    @Test
    void host_addresses_subtract_align_compare_and_measure_distances() {
        HostAddress a = HostAddress.of(0x7f00_0000_1234L);
        assertEquals(HostAddress.of(0x7f00_0000_1233L), a.checkedSub(1));
        assertEquals(0x1234, a.offsetFrom(HostAddress.of(0x7f00_0000_0000L)));
        assertEquals(HostAddress.of(0x7f00_0000_1000L), a.alignDown(0x1000));
        assertEquals(HostAddress.of(0x7f00_0000_2000L), a.alignUp(0x1000));
        assertTrue(HostAddress.of(0x2000).isAligned(0x1000));
        assertFalse(a.isAligned(0x1000));
        assertTrue(a.compareTo(HostAddress.of(-1L)) < 0, "unsigned order");
        assertTrue(HostAddress.of(-1L).compareTo(a) > 0);
        assertEquals("HVA 0x7f0000001234", a.toString());
    }

    private static MemoryRegion mmio(String name, long base) {
        return MemoryRegion.mmio(name, AddressRange.of(base, 0x1000), name);
    }

    @Test
    void section_lookup_finds_the_first_and_last_byte_of_every_section_and_nothing_in_between() {
        List<MemoryRegion> regions = new ArrayList<>();
        for (int k = 0; k < 7; k++) {
            regions.add(k % 2 == 0 ? mmio("dev" + k, 0x2000L * k + 0x1000)
                    : MemoryRegion.reserved("hole" + k, AddressRange.of(0x2000L * k + 0x1000, 0x1000)));
        }
        FlatView view = FlatView.of(regions);
        assertEquals(7, view.sections().size());
        for (MemoryRegion r : regions) {
            long first = r.range().base();
            long last = r.range().last();
            assertEquals(r, view.sectionAt(GuestAddress.of(first)).orElseThrow().region());
            assertEquals(r, view.sectionAt(GuestAddress.of(last)).orElseThrow().region());
            assertEquals(Optional.empty(), view.sectionAt(GuestAddress.of(first - 1)));
            assertEquals(Optional.empty(), view.sectionAt(GuestAddress.of(last + 1)));
        }
        assertEquals(Optional.empty(), view.sectionAt(GuestAddress.of(-1L)));
        assertEquals(Optional.empty(), FlatView.empty().sectionAt(GuestAddress.ZERO));
    }

    @Test
    void views_compare_by_their_sections_and_filter_by_kind() {
        FlatView a = FlatView.of(List.of(mmio("uart", 0x1000),
                MemoryRegion.reserved("gap", AddressRange.of(0x3000, 0x1000))));
        FlatView same = FlatView.of(List.of(mmio("uart", 0x1000),
                MemoryRegion.reserved("gap", AddressRange.of(0x3000, 0x1000))));
        assertEquals(a, same);
        assertEquals(a.hashCode(), same.hashCode());
        assertNotEquals(a, FlatView.of(List.of(mmio("uart", 0x1000))));
        assertNotEquals(a, FlatView.empty());
        assertFalse(a.equals("a string"));
        assertEquals(List.of(), FlatView.empty().sections());
        assertEquals(List.of("uart"),
                a.sectionsOf(Set.of(RegionKind.MMIO)).stream().map(s -> s.region().name()).toList());
        assertEquals(List.of("gap"),
                a.sectionsOf(Set.of(RegionKind.RESERVED)).stream().map(s -> s.region().name()).toList());
        assertEquals("FlatView" + a.sections(), a.toString());

        assertTrue(FlatView.diff(a, same).isEmpty());
        FlatView.Diff onlyAdded = FlatView.diff(FlatView.empty(), a);
        assertFalse(onlyAdded.isEmpty());
        assertFalse(onlyAdded.inverse().isEmpty());
        assertEquals(a.sections(), onlyAdded.inverse().removed());
    }
}
