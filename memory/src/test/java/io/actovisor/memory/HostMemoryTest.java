package io.actovisor.memory;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.memory.sys.Posix;
import io.actovisor.memory.sys.ProcessResources;
import io.actovisor.memory.testing.NativeRequirement;
import java.util.Arrays;
import java.util.Optional;
import java.util.OptionalLong;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.Test;

/** Real host memory on this machine: mmap, madvise, fallocate, mincore and pagemap. */
class HostMemoryTest {
    private static final long PAGE = HostMemory.PAGE_SIZE;

    @BeforeAll
    static void native_layer_is_there() {
        NativeRequirement.require("the libc binding", Posix.unavailabilityCause());
    }

    private static HostMemory open(boolean shared, String name, long size) {
        return shared ? HostMemory.shared(name, size) : HostMemory.anonymous(name, size);
    }

    private static Optional<String> pfnsHidden() {
        try (HostMemory probe = HostMemory.anonymous("pfn-probe", PAGE)) {
            probe.writeByte(probe.base(), (byte) 1);
            probe.pfn(probe.base());
            return Optional.empty();
        } catch (PfnUnavailableException e) {
            return Optional.of(e.getMessage());
        }
    }

    @ParameterizedTest(name = "shared={0}")
    @ValueSource(booleans = {false, true})
    void a_discarded_page_reads_back_as_zeros_and_its_neighbours_keep_their_data(boolean shared) {
        try (HostMemory mem = open(shared, "discard", 4 * PAGE)) {
            byte[] pattern = new byte[(int) (4 * PAGE)];
            Arrays.fill(pattern, (byte) 0x5a);
            mem.write(mem.base(), pattern);
            HostAddress second = mem.base().checkedAdd(PAGE);
            mem.discard(PAGE, 2 * PAGE);
            // Before anything reads them (a read maps the zero page), only the two kept pages are resident.
            assertEquals(2 * PAGE, mem.residentBytes(mem.hostRange()));
            assertEquals(0x5a, mem.readByte(mem.base().checkedAdd(PAGE - 1)));
            assertArrayEquals(new byte[(int) (2 * PAGE)], mem.read(second, (int) (2 * PAGE)));
            assertEquals(0x5a, mem.readByte(mem.base().checkedAdd(3 * PAGE)));
        }
    }

    @Test
    void a_discarded_page_loses_its_frame_and_comes_back_zeroed_on_a_fresh_one() {
        NativeRequirement.require("page frame numbers in /proc/self/pagemap", pfnsHidden());
        try (HostMemory mem = HostMemory.anonymous("pfn", 2 * PAGE)) {
            mem.writeByte(mem.base(), (byte) 'A');
            assertTrue(mem.pfn(mem.base()).isPresent(), "a written page has a frame");
            mem.discard(0, PAGE);
            assertEquals(OptionalLong.empty(), mem.pfn(mem.base()), "a discarded page is not present");
            // Whether the page allocator hands the same frame back is its business (under load it often does):
            // what a balloon relies on is that the old contents are gone and the next write gets a frame again.
            assertEquals(0, mem.readByte(mem.base()), "the old contents are gone");
            mem.writeByte(mem.base(), (byte) 'B');
            assertTrue(mem.pfn(mem.base()).isPresent(), "the re-touched page has a frame again");
            assertEquals('B', mem.readByte(mem.base()));
        }
    }

    @ParameterizedTest(name = "shared={0}")
    @ValueSource(booleans = {false, true})
    void the_edges_of_a_mapping_read_and_write_and_one_byte_past_is_refused(boolean shared) {
        try (HostMemory mem = open(shared, "edges", 2 * PAGE)) {
            HostAddress first = mem.base();
            HostAddress last = mem.base().checkedAdd(2 * PAGE - 1);
            mem.writeByte(first, (byte) 1);
            mem.writeByte(last, (byte) 2);
            assertEquals(1, mem.readByte(first));
            assertEquals(2, mem.readByte(last));
            HostAddress lastLong = mem.base().checkedAdd(2 * PAGE - 8);
            mem.writeLong(lastLong, 0x0102030405060708L);
            assertEquals(0x0102030405060708L, mem.readLong(lastLong));
            HostAddress past = last.checkedAdd(1);
            IndexOutOfBoundsException e = assertThrows(IndexOutOfBoundsException.class, () -> mem.readByte(past));
            assertTrue(e.getMessage().contains("outside host memory edges"), e.getMessage());
            assertThrows(IndexOutOfBoundsException.class, () -> mem.writeLong(mem.base().checkedAdd(2 * PAGE - 7), 1));
            assertThrows(IndexOutOfBoundsException.class, () -> mem.readByte(first.checkedSub(1)));
            assertThrows(IndexOutOfBoundsException.class, () -> mem.read(first, new byte[10], 0, (int) (2 * PAGE) + 1));
        }
    }

    @ParameterizedTest(name = "shared={0}")
    @ValueSource(booleans = {false, true})
    void after_close_nothing_is_left_in_proc_self_maps_or_fds(boolean shared) {
        ProcessResources before = ProcessResources.snapshot();
        HostMemory mem = open(shared, "leakcheck", 16 * PAGE);
        mem.populate(0, mem.size());
        assertEquals(16 * PAGE, mem.residentBytes(mem.hostRange()));
        long base = mem.base().value();
        assertEquals(1, ProcessResources.snapshot().mappingsOverlapping(base, mem.size()).size());
        mem.close();
        mem.close(); // idempotent
        ProcessResources after = ProcessResources.snapshot();
        assertEquals(java.util.List.of(), after.mappingsOverlapping(base, 16 * PAGE));
        assertEquals(java.util.Map.of(), after.nativeFdsOpenedSince(before));
        assertEquals(java.util.List.of(), after.mappingsMentioning("actovisor:leakcheck"));
        assertThrows(IllegalStateException.class, () -> mem.readByte(HostAddress.of(base)));
    }

    @Test
    void discard_refuses_unaligned_and_foreign_ranges() {
        try (HostMemory mem = HostMemory.anonymous("refuse", 2 * PAGE)) {
            assertThrows(IllegalArgumentException.class, () -> mem.discard(1, PAGE));
            assertThrows(IllegalArgumentException.class, () -> mem.populate(0, PAGE + 1));
            assertThrows(IndexOutOfBoundsException.class, () -> mem.discard(PAGE, 2 * PAGE));
            assertThrows(IndexOutOfBoundsException.class, () -> mem.discard(-PAGE, PAGE));
            assertThrows(IndexOutOfBoundsException.class, () -> mem.discard(PAGE, Long.MAX_VALUE - 4095));
            assertThrows(IndexOutOfBoundsException.class, () -> mem.populate(0, 0));
        }
    }

    @Test
    void sizes_that_are_not_whole_pages_are_refused_and_leave_nothing() {
        ProcessResources before = ProcessResources.snapshot();
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> HostMemory.shared("odd", PAGE + 1));
        assertEquals("host memory odd: size 4097 must be a positive multiple of the page size 4096", e.getMessage());
        assertEquals(java.util.Map.of(), ProcessResources.snapshot().nativeFdsOpenedSince(before));
    }
}
