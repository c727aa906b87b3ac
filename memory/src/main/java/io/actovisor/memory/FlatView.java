package io.actovisor.memory;

import java.util.ArrayList;
import java.util.Collection;
import java.util.Comparator;
import java.util.HashSet;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;

/**
 * The guest address space as the CPU and devices see it: sorted, non-overlapping {@link Section}s computed from a
 * set of possibly overlapping {@link MemoryRegion}s. Immutable.
 *
 * <p>Overlaps are resolved by priority: at each address the region with the highest priority answers. <b>Tie
 * rule:</b> among regions of equal priority, the one that comes <em>later</em> in the input list wins, so a region
 * added later shadows an older one of the same priority (as in QEMU). Neighbouring pieces that continue the same
 * region at contiguous offsets are coalesced into one section. RESERVED regions take part in resolution (they hide
 * what lies below them) and appear as sections.
 */
public final class FlatView {
    private static final FlatView EMPTY = new FlatView(List.of());

    // Sections by base address in a persistent tree: FlatViewEditor derives a new view from an old one in
    // O(k log n) for k changes, sharing everything else; sections is a read-only list view of the tree.
    private final FlatViewTree<Section> tree;
    private final List<Section> sections;

    private FlatView(List<Section> sections) {
        FlatViewTree<Section> t = null;
        for (Section s : sections) {
            t = FlatViewTree.merge(t, FlatViewTree.leaf(s.range().base(), s));
        }
        this.tree = t;
        this.sections = FlatViewTree.values(t);
    }

    FlatView(FlatViewTree<Section> tree) {
        this.tree = tree;
        this.sections = FlatViewTree.values(tree);
    }

    FlatViewTree<Section> tree() {
        return tree;
    }

    public static FlatView empty() {
        return EMPTY;
    }

    /**
     * Flatten {@code regions}, in insertion order (which decides ties of priority). O(n log n): the whole view is
     * rebuilt, as QEMU does on every commit. {@link FlatViewEditor} derives the same view incrementally; this stays
     * the reference it is tested against.
     */
    public static FlatView of(List<MemoryRegion> regions) {
        if (regions.isEmpty()) {
            return EMPTY;
        }
        // Boundary points in unsigned order: a region enters at its base and leaves after its last address. A
        // region ending at 2^64 never leaves.
        TreeMap<Long, List<Integer>> enter = new TreeMap<>(Long::compareUnsigned);
        TreeMap<Long, List<Integer>> leave = new TreeMap<>(Long::compareUnsigned);
        TreeSet<Long> points = new TreeSet<>(Long::compareUnsigned);
        for (int i = 0; i < regions.size(); i++) {
            AddressRange r = regions.get(i).range();
            enter.computeIfAbsent(r.base(), k -> new ArrayList<>()).add(i);
            points.add(r.base());
            if (r.last() != -1L) {
                leave.computeIfAbsent(r.last() + 1, k -> new ArrayList<>()).add(i);
                points.add(r.last() + 1);
            }
        }
        Comparator<Integer> winnerOrder = Comparator
                .<Integer>comparingInt(i -> regions.get(i).priority())
                .thenComparingInt(i -> i);
        TreeSet<Integer> active = new TreeSet<>(winnerOrder);
        List<Section> out = new ArrayList<>();
        Long[] sorted = points.toArray(new Long[0]);
        for (int p = 0; p < sorted.length; p++) {
            long at = sorted[p];
            for (int i : leave.getOrDefault(at, List.of())) {
                active.remove(i);
            }
            for (int i : enter.getOrDefault(at, List.of())) {
                active.add(i);
            }
            if (active.isEmpty()) {
                continue;
            }
            long last = p + 1 < sorted.length ? sorted[p + 1] - 1 : -1L;
            MemoryRegion winner = regions.get(active.last());
            Section piece = new Section(AddressRange.inclusive(at, last), winner, at - winner.range().base());
            append(out, piece);
        }
        return new FlatView(out);
    }

    private static void append(List<Section> out, Section piece) {
        if (!out.isEmpty()) {
            Section prev = out.get(out.size() - 1);
            if (prev.isContinuedBy(piece)) {
                out.set(out.size() - 1, new Section(
                        new AddressRange(prev.range().base(), prev.range().size() + piece.range().size()),
                        prev.region(), prev.offsetInRegion()));
                return;
            }
        }
        out.add(piece);
    }

    /** The sections in address order (a read-only list; {@code get(i)} is O(log n), iteration O(n)). */
    public List<Section> sections() {
        return sections;
    }

    /** The section that answers {@code gpa}, if any. O(log n). */
    public Optional<Section> sectionAt(GuestAddress gpa) {
        FlatViewTree<Section> floor = FlatViewTree.floor(tree, gpa.value());
        return floor != null && floor.value.range().contains(gpa.value()) ? Optional.of(floor.value)
                : Optional.empty();
    }

    /** The sections of the given kinds. */
    public List<Section> sectionsOf(Collection<RegionKind> kinds) {
        return sections.stream().filter(s -> kinds.contains(s.kind())).toList();
    }

    /**
     * What changed from {@code before} to {@code after}: the sections of {@code before} that are not in
     * {@code after} exactly (same range, region and offset) are removed, those of {@code after} not in
     * {@code before} are added. A listener applies the removals first, then the additions. O(n): compares the
     * views whole (the reference for {@link FlatViewEditor}'s incremental diff).
     */
    public static Diff diff(FlatView before, FlatView after) {
        Set<Section> old = new HashSet<>(before.sections);
        Set<Section> now = new HashSet<>(after.sections);
        List<Section> removed = before.sections.stream().filter(s -> !now.contains(s)).toList();
        List<Section> added = after.sections.stream().filter(s -> !old.contains(s)).toList();
        return new Diff(removed, added);
    }

    /** The difference between two flat views, each list in address order. */
    public record Diff(List<Section> removed, List<Section> added) {
        public Diff {
            removed = List.copyOf(removed);
            added = List.copyOf(added);
        }

        public boolean isEmpty() {
            return removed.isEmpty() && added.isEmpty();
        }

        /** The diff that undoes this one. */
        public Diff inverse() {
            return new Diff(added, removed);
        }
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof FlatView v && v.sections.equals(sections);
    }

    @Override
    public int hashCode() {
        return sections.hashCode();
    }

    @Override
    public String toString() {
        return "FlatView" + sections;
    }
}
