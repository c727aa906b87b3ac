package io.actovisor.memory;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.List;
import org.junit.jupiter.api.Test;

/** A section turns a guest range into a host block and an offset range; discards go through that. */
class SectionTest {
    private static final long PAGE = HostMemory.PAGE_SIZE;

    @Test
    void aGuestRangeOfASectionIsAnOffsetRangeOfItsHostBlock() {
        try (HostMemory mem = HostMemory.anonymous("section-span", 16 * PAGE)) {
            // RAM at guest 0x100000 backed from offset 2 pages; an MMIO hole splits it into two sections.
            MemoryRegion ram = MemoryRegion.ram("ram", AddressRange.of(0x10_0000, 8 * PAGE), mem, 2 * PAGE);
            MemoryRegion hole = MemoryRegion.mmio("hole", AddressRange.of(0x10_0000 + 2 * PAGE, PAGE), "dev");
            List<Section> sections = FlatView.of(List.of(ram, hole)).sections();
            Section second = sections.get(2);
            assertEquals(0x10_0000 + 3 * PAGE, second.range().base());
            HostSpan span = second.hostSpan(AddressRange.of(0x10_0000 + 4 * PAGE, 2 * PAGE));
            assertEquals(new HostSpan(mem, 6 * PAGE, 2 * PAGE), span);
            assertEquals(AddressRange.of(second.hostAddress(new GuestAddress(0x10_0000 + 4 * PAGE)).value(),
                    2 * PAGE), span.hostRange());
            mem.writeLong(mem.base().checkedAdd(6 * PAGE), 99);
            mem.writeLong(mem.base().checkedAdd(8 * PAGE), 98);
            span.discard();
            assertEquals(0, mem.readLong(mem.base().checkedAdd(6 * PAGE)));
            assertEquals(98, mem.readLong(mem.base().checkedAdd(8 * PAGE)), "the page after the span is kept");
            assertThrows(IllegalArgumentException.class, () -> second.hostSpan(AddressRange.of(0x10_0000, PAGE)),
                    "a range of another section");
            assertThrows(IllegalArgumentException.class, () -> sections.get(1).hostSpan(sections.get(1).range()),
                    "MMIO has no host memory");
        }
    }

    @Test
    void aSpanOutsideItsBlockCannotBeMade() {
        try (HostMemory mem = HostMemory.anonymous("section-bad", 2 * PAGE)) {
            assertThrows(IllegalArgumentException.class, () -> new HostSpan(mem, PAGE, 2 * PAGE));
            assertThrows(IllegalArgumentException.class, () -> new HostSpan(mem, -PAGE, PAGE));
            assertThrows(IllegalArgumentException.class, () -> new HostSpan(mem, 0, 0));
        }
    }
}
