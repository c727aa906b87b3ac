package io.actovisor.memory;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Optional;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import org.junit.jupiter.api.Test;

class AddressTest {
    @Test
    void addition_past_two_to_the_64_is_refused_naming_the_operands() {
        GuestAddress top = GuestAddress.of(0xffff_ffff_ffff_f000L);
        assertEquals(GuestAddress.of(-1L), top.checkedAdd(0xfff));
        ArithmeticException e = assertThrows(ArithmeticException.class, () -> top.checkedAdd(0x1000));
        assertEquals("guest address 0xfffffffffffff000 + 0x1000 overflows 64 bits", e.getMessage());
    }

    @Test
    void subtraction_below_zero_is_refused() {
        HostAddress a = HostAddress.of(0x1000);
        assertThrows(ArithmeticException.class, () -> a.checkedSub(0x1001));
        assertEquals(HostAddress.ZERO, a.checkedSub(0x1000));
        assertThrows(ArithmeticException.class, () -> a.offsetFrom(HostAddress.of(0x2000)));
    }

    @Test
    void addresses_compare_unsigned() {
        assertTrue(GuestAddress.of(-1L).compareTo(GuestAddress.of(1)) > 0);
        assertTrue(GuestAddress.of(0x8000_0000_0000_0000L).compareTo(GuestAddress.of(0x7fff_ffff_ffff_ffffL)) > 0);
    }

    @Test
    void alignment() {
        assertEquals(GuestAddress.of(0x2000), GuestAddress.of(0x1001).alignUp(0x1000));
        assertEquals(GuestAddress.of(0x1000), GuestAddress.of(0x1fff).alignDown(0x1000));
        assertThrows(ArithmeticException.class, () -> GuestAddress.of(-1L).alignUp(0x1000));
        assertThrows(IllegalArgumentException.class, () -> GuestAddress.of(0).alignUp(3));
    }

    @Test
    void a_range_ending_beyond_two_to_the_64_cannot_be_built_and_the_error_names_base_and_size() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> AddressRange.of(0xffff_ffff_ffff_f000L, 0x2000));
        assertEquals("address range with base 0xfffffffffffff000 and size 0x2000 ends beyond 2^64", e.getMessage());
        AddressRange topPage = AddressRange.of(0xffff_ffff_ffff_f000L, 0x1000);
        assertEquals(-1L, topPage.last());
        assertThrows(ArithmeticException.class, topPage::end);
        assertThrows(IllegalArgumentException.class, () -> AddressRange.of(0x1000, 0));
    }

    @Test
    void overlap_containment_and_intersection() {
        AddressRange a = AddressRange.of(0x1000, 0x3000);
        AddressRange b = AddressRange.of(0x3000, 0x2000);
        assertTrue(a.overlaps(b));
        assertEquals(Optional.of(AddressRange.of(0x3000, 0x1000)), a.intersect(b));
        assertFalse(a.overlaps(AddressRange.of(0x4000, 1)));
        assertTrue(a.contains(AddressRange.of(0x1000, 0x3000)));
        assertFalse(a.contains(b));
    }

    @Test
    void align_inward_keeps_only_whole_pages() {
        assertEquals(Optional.of(AddressRange.of(0x2000, 0x1000)), AddressRange.of(0x1800, 0x2000).alignInward(0x1000));
        assertEquals(Optional.empty(), AddressRange.of(0x1800, 0x1000).alignInward(0x1000));
        assertEquals(Optional.of(AddressRange.of(0xffff_ffff_ffff_f000L, 0x1000)),
                AddressRange.of(0xffff_ffff_ffff_e800L, 0x1800).alignInward(0x1000));
    }

    @Property(tries = 2000)
    void checked_add_agrees_with_big_integer(@ForAll long a, @ForAll long b) {
        java.math.BigInteger sum = new java.math.BigInteger(Long.toUnsignedString(a))
                .add(new java.math.BigInteger(Long.toUnsignedString(b)));
        boolean fits = sum.bitLength() <= 64;
        if (fits) {
            assertEquals(sum.longValue(), GuestAddress.of(a).checkedAdd(b).value());
        } else {
            assertThrows(ArithmeticException.class, () -> GuestAddress.of(a).checkedAdd(b));
        }
    }
}
