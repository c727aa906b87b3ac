package io.actovisor.memory.sys;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;

import org.junit.jupiter.api.Test;

/** The bounds-checked window on native memory that kernel structures are written into. */
class NativeBufferTest {
    @Test
    void values_are_little_endian_at_their_offsets_and_puts_chain() {
        try (NativeBuffer buf = NativeBuffer.allocate(32)) {
            assertEquals(32, buf.size());
            NativeBuffer same = buf.putByte(0, (byte) 0x11).putShort(2, (short) 0x2233).putInt(4, 0x44556677)
                    .putLong(8, 0x0102030405060708L).putBytes(16, new byte[] {9, 8, 7}).putBytes(20, new byte[] {1, 2, 3}, 1, 2);
            assertSame(buf, same);
            assertArrayEquals(new byte[] {0x11, 0, 0x33, 0x22, 0x77, 0x66, 0x55, 0x44, 8, 7, 6, 5, 4, 3, 2, 1,
                    9, 8, 7, 0, 2, 3, 0, 0}, buf.getBytes(0, 24));
            assertEquals(0x11, buf.getByte(0));
            assertEquals((short) 0x2233, buf.getShort(2));
            assertEquals(0x44556677, buf.getInt(4));
            assertEquals(0x0102030405060708L, buf.getLong(8));
            byte[] dst = {-1, -1, -1, -1};
            buf.getBytes(16, dst, 1, 2);
            assertArrayEquals(new byte[] {-1, 9, 8, -1}, dst);
        }
    }

    @Test
    void acquire_and_release_accessors_see_the_plain_ones() {
        try (NativeBuffer buf = NativeBuffer.allocate(16)) {
            buf.putIntRelease(4, 0x12345678);
            assertEquals(0x12345678, buf.getInt(4));
            assertEquals(0x12345678, buf.getIntAcquire(4));
            buf.putLong(8, -2L);
            assertEquals(-2L, buf.getLongAcquire(8));
        }
    }

    @Test
    void clear_zeroes_exactly_the_range_asked_for() {
        try (NativeBuffer buf = NativeBuffer.allocate(8)) {
            buf.putLong(0, -1L);
            assertSame(buf, buf.clear(2, 3));
            assertArrayEquals(new byte[] {-1, -1, 0, 0, 0, -1, -1, -1}, buf.getBytes(0, 8));
            assertSame(buf, buf.clear());
            assertArrayEquals(new byte[8], buf.getBytes(0, 8));
        }
    }

    @Test
    void the_last_bytes_are_reachable_and_one_past_is_refused() {
        try (NativeBuffer buf = NativeBuffer.allocate(8)) {
            buf.putByte(7, (byte) 1);
            buf.putInt(4, 2);
            assertEquals(2, buf.getInt(4));
            IndexOutOfBoundsException e = assertThrows(IndexOutOfBoundsException.class, () -> buf.getInt(6));
            assertEquals("access of 4 bytes at offset 6 is outside the 8-byte native buffer at 0x"
                    + Long.toHexString(buf.address()), e.getMessage());
            assertArrayEquals(new byte[0], buf.getBytes(8, 0));
            assertThrows(IndexOutOfBoundsException.class, () -> buf.getByte(8));
            assertThrows(IndexOutOfBoundsException.class, () -> buf.getByte(-1));
            assertThrows(IndexOutOfBoundsException.class, () -> buf.getBytes(0, new byte[1], 0, -1));
            assertThrows(IndexOutOfBoundsException.class, () -> buf.clear(1, 8));
        }
    }

    @Test
    void sizes_must_be_positive_and_views_must_not_be_of_address_zero() {
        assertThrows(IllegalArgumentException.class, () -> NativeBuffer.allocate(0));
        try (NativeBuffer one = NativeBuffer.allocate(1)) {
            assertEquals(0, one.getByte(0), "allocated memory starts zeroed");
            assertEquals(1, one.size());
            assertEquals(0, NativeBuffer.view(one.address(), 0).size());
            assertEquals(Integer.MAX_VALUE, NativeBuffer.view(one.address(), Integer.MAX_VALUE).size());
            assertThrows(IllegalArgumentException.class, () -> NativeBuffer.view(one.address(), -1));
            assertThrows(IllegalArgumentException.class,
                    () -> NativeBuffer.view(one.address(), Integer.MAX_VALUE + 1L));
        }
        IllegalArgumentException zero = assertThrows(IllegalArgumentException.class, () -> NativeBuffer.view(0, 8));
        assertEquals("native view of address 0", zero.getMessage());
    }

    @Test
    void an_owned_buffer_refuses_access_after_close_and_a_view_does_not_free_what_it_shows() {
        NativeBuffer owner = NativeBuffer.allocate(8);
        NativeBuffer view = NativeBuffer.view(owner.address(), 8);
        view.putLong(0, 42);
        view.close();
        assertEquals(42, view.getLong(0));
        assertEquals(42, owner.getLong(0));
        owner.close();
        owner.close();
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> owner.getLong(0));
        assertEquals("native buffer at 0x" + Long.toHexString(owner.address()) + " is closed", e.getMessage());
    }
}
