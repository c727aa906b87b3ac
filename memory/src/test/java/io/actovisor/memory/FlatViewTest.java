package io.actovisor.memory;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.Combinators;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;

/**
 * Flattening and diff against a naive page-by-page reference. Regions live on a small page grid so random sets
 * overlap often; backings are shared "host memories" described by identity, which a pure model cannot fake, so the
 * test uses tiny real anonymous mappings.
 */
class FlatViewTest {
    private static final long PAGE = 0x1000;
    private static final int PAGES = 64;
    private static final List<HostMemory> MEMORIES = List.of(
            HostMemory.anonymous("fv-a", PAGES * PAGE), HostMemory.anonymous("fv-b", PAGES * PAGE));

    @AfterAll
    static void closeMemories() {
        MEMORIES.forEach(HostMemory::close);
    }

    /** What answers at one page, as the reference computes it. */
    private record Owner(MemoryRegion region, long offset) {
    }

    private static Map<Long, Owner> reference(List<MemoryRegion> regions) {
        Map<Long, Owner> pages = new HashMap<>();
        for (long p = 0; p < PAGES + 16; p++) {
            long addr = p * PAGE;
            MemoryRegion best = null;
            for (MemoryRegion r : regions) { // later wins ties: >= keeps replacing
                if (r.range().contains(addr) && (best == null || r.priority() >= best.priority())) {
                    best = r;
                }
            }
            if (best != null) {
                pages.put(addr, new Owner(best, addr - best.range().base()));
            }
        }
        return pages;
    }

    private static Map<Long, Owner> pagesOf(List<Section> sections) {
        Map<Long, Owner> pages = new HashMap<>();
        for (Section s : sections) {
            for (long a = s.range().base(); a <= s.range().last(); a += PAGE) {
                Owner previous = pages.put(a, new Owner(s.region(), s.offsetInRegion() + (a - s.range().base())));
                assertEquals(null, previous, "sections overlap at 0x" + Long.toHexString(a));
            }
        }
        return pages;
    }

    @Provide
    Arbitrary<List<MemoryRegion>> regionSets() {
        Arbitrary<MemoryRegion> region = Combinators.combine(
                Arbitraries.integers().between(0, PAGES - 1),
                Arbitraries.integers().between(1, 16),
                Arbitraries.integers().between(-2, 2),
                Arbitraries.of(RegionKind.values()),
                Arbitraries.integers().between(0, MEMORIES.size() - 1),
                Arbitraries.integers().between(0, 1000))
            .as((start, length, priority, kind, memory, id) -> {
                AddressRange range = AddressRange.of(start * PAGE, length * PAGE);
                String name = kind.name().toLowerCase() + id;
                return switch (kind) {
                    case RAM -> MemoryRegion.ram(name, range, MEMORIES.get(memory), 0).withPriority(priority);
                    case ROM -> MemoryRegion.rom(name, range, MEMORIES.get(memory), 0).withPriority(priority);
                    case MMIO -> MemoryRegion.mmio(name, range, "dev" + id).withPriority(priority);
                    case RESERVED -> MemoryRegion.reserved(name, range).withPriority(priority);
                };
            });
        return region.list().ofMinSize(0).ofMaxSize(12);
    }

    @Property(tries = 3000)
    void flattening_matches_the_page_by_page_reference(@ForAll("regionSets") List<MemoryRegion> regions) {
        FlatView view = FlatView.of(regions);
        List<Section> sections = view.sections();
        for (int i = 1; i < sections.size(); i++) {
            Section prev = sections.get(i - 1);
            Section next = sections.get(i);
            assertTrue(Long.compareUnsigned(prev.range().last(), next.range().base()) < 0, "sorted, disjoint");
            assertTrue(!prev.isContinuedBy(next), "neighbours continuing one region are coalesced: " + view);
        }
        assertEquals(reference(regions), pagesOf(sections));
    }

    @Property(tries = 3000)
    void diff_turns_the_old_view_into_the_new_one(@ForAll("regionSets") List<MemoryRegion> before,
            @ForAll("regionSets") List<MemoryRegion> after) {
        FlatView old = FlatView.of(before);
        FlatView now = FlatView.of(after);
        FlatView.Diff diff = FlatView.diff(old, now);
        // Applying the diff as a listener would (removals first, then additions) yields the new view page by page.
        Map<Long, Owner> pages = pagesOf(old.sections());
        for (Section s : diff.removed()) {
            for (long a = s.range().base(); a <= s.range().last(); a += PAGE) {
                assertTrue(pages.remove(a) != null, "removed section was not in the old view: " + s);
            }
        }
        Map<Long, Owner> added = pagesOf(diff.added());
        added.forEach((a, owner) -> assertEquals(null, pages.put(a, owner), "added over something kept"));
        assertEquals(reference(after), pages);
        // Nothing unchanged is touched: a page whose owner did not change is in no removed section.
        Map<Long, Owner> oldRef = reference(before);
        Map<Long, Owner> newRef = reference(after);
        Map<Long, Owner> removedPages = pagesOf(diff.removed());
        for (Section kept : old.sections()) {
            if (now.sections().contains(kept)) {
                for (long a = kept.range().base(); a <= kept.range().last(); a += PAGE) {
                    assertTrue(!removedPages.containsKey(a));
                    assertEquals(oldRef.get(a), newRef.get(a));
                }
            }
        }
        assertEquals(FlatView.diff(now, old), diff.inverse());
    }

    @Test
    void tie_on_priority_goes_to_the_later_region() {
        MemoryRegion first = MemoryRegion.mmio("first", AddressRange.of(0, 0x2000), "a");
        MemoryRegion second = MemoryRegion.mmio("second", AddressRange.of(0x1000, 0x2000), "b");
        List<Section> s = FlatView.of(List.of(first, second)).sections();
        assertEquals(List.of(new Section(AddressRange.of(0, 0x1000), first, 0),
                new Section(AddressRange.of(0x1000, 0x2000), second, 0)), s);
    }

    @Test
    void a_lower_priority_region_under_another_does_not_split_it() {
        MemoryRegion big = MemoryRegion.ram("ram", AddressRange.of(0, 0x10000), MEMORIES.get(0), 0).withPriority(1);
        MemoryRegion under = MemoryRegion.mmio("under", AddressRange.of(0x4000, 0x1000), "d");
        assertEquals(List.of(new Section(big.range(), big, 0)), FlatView.of(List.of(big, under)).sections());
    }

    @Test
    void a_region_reaching_the_top_of_the_address_space_flattens() {
        MemoryRegion top = MemoryRegion.reserved("top", AddressRange.of(0xffff_ffff_ffff_0000L, 0x10000));
        MemoryRegion hole = MemoryRegion.mmio("hole", AddressRange.of(0xffff_ffff_ffff_8000L, 0x1000), "d")
                .withPriority(1);
        List<Section> s = FlatView.of(List.of(top, hole)).sections();
        assertEquals(3, s.size());
        assertEquals(-1L, s.get(2).range().last());
        assertEquals(Optional.of(s.get(1)), FlatView.of(List.of(top, hole)).sectionAt(GuestAddress.of(0xffff_ffff_ffff_8abcL)));
    }

    @Test
    void ten_thousand_disjoint_regions_give_ten_thousand_sections() {
        List<MemoryRegion> regions = new ArrayList<>();
        for (int i = 0; i < 10_000; i++) {
            regions.add(MemoryRegion.mmio("r" + i, AddressRange.of(i * PAGE * 2, PAGE), "d"));
        }
        assertEquals(10_000, FlatView.of(regions).sections().size());
    }
}
