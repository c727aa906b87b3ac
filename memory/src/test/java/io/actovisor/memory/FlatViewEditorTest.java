package io.actovisor.memory;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.Combinators;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;

/**
 * The incremental flat view against two references, after every commit of a random sequence (some accepted, some
 * rejected, some invalid): the naive page-by-page owner of every page, and the whole rebuild {@link FlatView#of}
 * with its whole diff {@link FlatView#diff}. Regions live on a small page grid, at the bottom or at the very top
 * of the 64-bit space, so commits overlap, split and coalesce sections often.
 */
class FlatViewEditorTest {
    private static final long PAGE = 0x1000;
    private static final int PAGES = 48;
    private static final List<HostMemory> MEMORIES = List.of(
            HostMemory.anonymous("fve-a", PAGES * PAGE), HostMemory.anonymous("fve-b", PAGES * PAGE));

    @AfterAll
    static void closeMemories() {
        MEMORIES.forEach(HostMemory::close);
    }

    /** One change as generated: add {@code region}, or remove the {@code pick}-th live region (or a missing one). */
    private record Op(MemoryRegion region, int pick, boolean remove) {
    }

    /** One commit: its changes, and whether the listeners accept it. */
    private record CommitSpec(List<Op> ops, boolean accepted) {
    }

    /** Commits on the grid that starts at {@code gridBase}. */
    private record History(long gridBase, List<CommitSpec> commits) {
    }

    private record Owner(MemoryRegion region, long offset) {
    }

    private static Map<Long, Owner> reference(long gridBase, List<MemoryRegion> regions) {
        Map<Long, Owner> pages = new HashMap<>();
        for (long p = 0; p < PAGES + 8; p++) {
            long addr = gridBase + p * PAGE;
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
            for (long a = s.range().base(); ; a += PAGE) {
                assertEquals(null, pages.put(a, new Owner(s.region(), s.offsetInRegion() + (a - s.range().base()))),
                        "sections overlap at 0x" + Long.toHexString(a));
                if (a == s.range().last() - PAGE + 1) {
                    break;
                }
            }
        }
        return pages;
    }

    @Provide
    Arbitrary<History> histories() {
        Arbitrary<Long> gridBase = Arbitraries.of(0L, -(PAGES + 8) * PAGE);
        return gridBase.flatMap(base -> {
            Arbitrary<MemoryRegion> region = Combinators.combine(
                    Arbitraries.integers().between(0, PAGES - 1),
                    Arbitraries.integers().between(1, 12),
                    Arbitraries.integers().between(-1, 1),
                    Arbitraries.of(RegionKind.values()),
                    Arbitraries.integers().between(0, MEMORIES.size() - 1),
                    Arbitraries.integers().between(0, 40))
                .as((start, length, priority, kind, memory, id) -> {
                    int pages = Math.min(length, PAGES + 8 - start);
                    AddressRange range = AddressRange.of(base + start * PAGE, pages * PAGE);
                    String name = "r" + id; // few names: adding a live name again is a refused commit
                    return switch (kind) {
                        case RAM -> MemoryRegion.ram(name, range, MEMORIES.get(memory), 0).withPriority(priority);
                        case ROM -> MemoryRegion.rom(name, range, MEMORIES.get(memory), PAGE).withPriority(priority);
                        case MMIO -> MemoryRegion.mmio(name, range, "dev" + id).withPriority(priority);
                        case RESERVED -> MemoryRegion.reserved(name, range).withPriority(priority);
                    };
                });
            Arbitrary<Op> op = Combinators.combine(region, Arbitraries.integers().between(0, 20),
                    Arbitraries.integers().between(0, 9)).as((r, pick, kind) -> new Op(r, pick, kind < 4));
            Arbitrary<CommitSpec> commit = Combinators.combine(op.list().ofMinSize(1).ofMaxSize(4),
                    Arbitraries.integers().between(0, 5)).as((ops, a) -> new CommitSpec(ops, a > 0));
            return commit.list().ofMinSize(1).ofMaxSize(25).map(c -> new History(base, c));
        });
    }

    @Property(tries = 1500)
    void every_commit_matches_the_page_by_page_reference_and_the_whole_rebuild(
            @ForAll("histories") History history) {
        long gridBase = history.gridBase();
        FlatViewEditor editor = new FlatViewEditor();
        Map<String, MemoryRegion> model = new LinkedHashMap<>();
        for (CommitSpec spec : history.commits()) {
            List<FlatViewEditor.Change> changes = new ArrayList<>();
            Map<String, MemoryRegion> next = new LinkedHashMap<>(model);
            boolean valid = true;
            for (Op op : spec.ops()) {
                if (op.remove()) {
                    List<String> live = new ArrayList<>(next.keySet());
                    String name = op.pick() < live.size() ? live.get(op.pick()) : "missing" + op.pick();
                    changes.add(new FlatViewEditor.Remove(name));
                    valid &= next.remove(name) != null;
                } else {
                    changes.add(new FlatViewEditor.Add(op.region()));
                    valid &= next.putIfAbsent(op.region().name(), op.region()) == null;
                }
            }
            FlatView before = editor.view();
            FlatViewEditor.Staged staged = editor.stage(changes);
            assertEquals(valid, staged.isValid(), staged.problems().toString());
            if (valid) {
                FlatView expected = FlatView.of(List.copyOf(next.values()));
                assertEquals(expected.sections(), staged.view().sections(), "incremental view vs whole rebuild");
                assertEquals(reference(gridBase, List.copyOf(next.values())), pagesOf(staged.view().sections()));
                assertEquals(FlatView.diff(before, expected), staged.diff(), "incremental diff vs whole diff");
                assertEquals(List.copyOf(next.values()), List.copyOf(staged.regions()));
                assertEquals(before, editor.view(), "staging leaves the current view alone");
                if (spec.accepted()) {
                    editor.accept(staged);
                    model = next;
                } else {
                    editor.reject(staged);
                }
            }
            assertEquals(List.copyOf(model.values()), List.copyOf(editor.regions()));
            assertEquals(FlatView.of(List.copyOf(model.values())), editor.view());
            assertEquals(reference(gridBase, List.copyOf(model.values())), pagesOf(editor.view().sections()));
            for (Section s : editor.view().sections()) {
                assertEquals(s, editor.view().sectionAt(s.guestBase()).orElseThrow());
                assertEquals(s, editor.view().sectionAt(GuestAddress.of(s.range().last())).orElseThrow());
            }
        }
    }

    @Test
    void a_second_stage_before_accept_or_reject_is_refused() {
        FlatViewEditor editor = new FlatViewEditor();
        FlatViewEditor.Staged staged = editor.stage(List.of(new FlatViewEditor.Add(
                MemoryRegion.mmio("a", AddressRange.of(0, PAGE), "d"))));
        assertThrows(IllegalStateException.class, () -> editor.stage(List.of()));
        editor.accept(staged);
        assertThrows(IllegalStateException.class, () -> editor.reject(staged));
        assertEquals(1, editor.regionCount());
    }

    @Test
    void an_invalid_commit_names_every_problem_and_changes_nothing() {
        FlatViewEditor editor = new FlatViewEditor();
        MemoryRegion a = MemoryRegion.mmio("a", AddressRange.of(0, PAGE), "d");
        editor.accept(editor.stage(List.of(new FlatViewEditor.Add(a))));
        FlatViewEditor.Staged bad = editor.stage(List.of(new FlatViewEditor.Remove("a"),
                new FlatViewEditor.Remove("nope"), new FlatViewEditor.Add(a), new FlatViewEditor.Add(a)));
        assertFalse(bad.isValid());
        assertEquals(List.of("region 'nope' does not exist", "region 'a' already exists"), bad.problems());
        assertEquals(List.of(a), List.copyOf(editor.regions()));
        assertTrue(editor.stage(List.of(new FlatViewEditor.Remove("a"))).isValid(), "nothing left staged");
    }

    @Test
    void one_page_commits_over_many_regions_touch_only_their_neighbourhood() {
        FlatViewEditor editor = new FlatViewEditor();
        List<MemoryRegion> all = new ArrayList<>();
        for (int i = 0; i < 20_000; i++) {
            all.add(MemoryRegion.mmio("r" + i, AddressRange.of(i * PAGE * 2, PAGE), "d"));
            FlatViewEditor.Staged s = editor.stage(List.of(new FlatViewEditor.Add(all.get(i))));
            assertEquals(1, s.diff().added().size());
            editor.accept(s);
        }
        FlatViewEditor.Staged s = editor.stage(List.of(new FlatViewEditor.Remove("r777")));
        assertEquals(List.of(new Section(all.get(777).range(), all.get(777), 0)), s.diff().removed());
        editor.accept(s);
        assertEquals(19_999, editor.view().sections().size());
        assertEquals(FlatView.of(List.copyOf(editor.regions())), editor.view());
    }
}
