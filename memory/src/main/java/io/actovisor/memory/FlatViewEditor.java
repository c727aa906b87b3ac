package io.actovisor.memory;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;

/**
 * The regions of one address space and their {@link FlatView}, kept up to date incrementally: a commit of k region
 * changes recomputes the view only over the address ranges those regions cover and splices the result into a
 * persistent copy of the old view, so it costs O(k log n) plus the sections and overlapping regions in those
 * ranges (and, per power-of-two size class, the regions that start less than one such size before a range: few
 * unless many regions of similar size overlap there), not O(n) as {@link FlatView#of} does (the whole rebuild that QEMU does, and the reference this class is
 * tested against: the view and the diff equal {@code FlatView.of(regions())} and {@code FlatView.diff}).
 *
 * <p>Two steps, so that a commit can still fail after it was computed: {@link #stage} validates the changes and
 * computes the new view and the diff; then exactly one of {@link #accept} (the staged state becomes current) or
 * {@link #reject} (everything as before). Until then {@link #view()} and {@link #regions()} still answer the last
 * accepted state, and no other commit may be staged. Not thread-safe: it has one owner (an address space actor or
 * a lock).
 *
 * <p>Ties of priority go to the region added later, as in {@link FlatView#of} with the regions in insertion order;
 * a region that is removed and added again counts as added anew.
 */
public final class FlatViewEditor {

    /** One change of a commit. */
    public sealed interface Change permits Add, Remove {
    }

    /** Add {@code region}; its name must not be in use. */
    public record Add(MemoryRegion region) implements Change {
        public Add {
            Objects.requireNonNull(region, "region");
        }
    }

    /** Remove the region called {@code name}. */
    public record Remove(String name) implements Change {
        public Remove {
            Objects.requireNonNull(name, "name");
        }
    }

    /** A computed commit, not yet accepted or rejected. */
    public static final class Staged {
        private final List<String> problems;
        private final FlatView view;
        private final FlatView.Diff diff;
        private final FlatViewTree<MemoryRegion> order;
        private final Pending pending;

        private Staged(List<String> problems, FlatView view, FlatView.Diff diff, FlatViewTree<MemoryRegion> order,
                Pending pending) {
            this.problems = List.copyOf(problems);
            this.view = view;
            this.diff = diff;
            this.order = order;
            this.pending = pending;
        }

        /**
         * Why the commit is invalid (a name added twice, a name that does not exist), empty when it is valid; an
         * invalid commit changes nothing and needs neither accept nor reject.
         */
        public List<String> problems() {
            return problems;
        }

        public boolean isValid() {
            return problems.isEmpty();
        }

        /** The flat view after the commit. */
        public FlatView view() {
            return view;
        }

        /** What changed from the current view: equals {@code FlatView.diff(current, view())}. */
        public FlatView.Diff diff() {
            return diff;
        }

        /** The regions after the commit, in insertion order. */
        public List<MemoryRegion> regions() {
            return FlatViewTree.values(order);
        }
    }

    /** A region as the index holds it: {@code order} is its insertion number, which breaks ties of priority. */
    private record Entry(MemoryRegion region, long order) {
        Key key() {
            return new Key(base(), order);
        }

        long base() {
            return region.range().base();
        }

        long last() {
            return region.range().last();
        }
    }

    /** Where the size-class index sorts an entry: by base (unsigned), then insertion number. */
    private record Key(long base, long order) {
    }

    private static final Comparator<Key> BY_BASE = (x, y) -> {
        int c = Long.compareUnsigned(x.base(), y.base());
        return c != 0 ? c : Long.compare(x.order(), y.order());
    };
    private static final Comparator<Entry> WINNER = Comparator.<Entry>comparingInt(e -> e.region().priority())
            .thenComparingLong(Entry::order);

    private final Map<String, Entry> byName = new HashMap<>();
    // Regions by size class c (size - 1 < 2^c), each sorted by base: a region of class c overlapping [a, b] starts
    // in [a - 2^c + 1, b], so an overlap query looks at 65 short ranges instead of every region.
    @SuppressWarnings("unchecked")
    private final TreeMap<Key, Entry>[] bySize = new TreeMap[65];
    private FlatViewTree<MemoryRegion> regionsByOrder;
    private FlatView view = FlatView.empty();
    private long nextOrder;
    private Pending pending;

    /** The undo log of the staged commit: its steps in order (an entry added, or removed), undone in reverse. */
    private record Pending(List<Entry> entries, List<Boolean> added, long orderBefore) {
        void log(Entry e, boolean wasAdded) {
            entries.add(e);
            added.add(wasAdded);
        }
    }

    /** An empty address space. */
    public FlatViewEditor() {
    }

    /** The flat view as of the last accepted commit. */
    public FlatView view() {
        return view;
    }

    /** The regions as of the last accepted commit, in insertion order (a read-only list sharing the editor's tree). */
    public List<MemoryRegion> regions() {
        return FlatViewTree.values(regionsByOrder);
    }

    /** How many regions the last accepted commit left. */
    public int regionCount() {
        return FlatViewTree.size(regionsByOrder);
    }

    /**
     * Validate {@code changes}, applied in order, and compute the view after them. A valid result must be
     * {@linkplain #accept accepted} or {@linkplain #reject rejected} before the next stage.
     */
    public Staged stage(List<? extends Change> changes) {
        if (pending != null) {
            throw new IllegalStateException("a staged commit is neither accepted nor rejected yet");
        }
        Pending undo = new Pending(new ArrayList<>(), new ArrayList<>(), nextOrder);
        List<String> problems = new ArrayList<>();
        FlatViewTree<MemoryRegion> order = regionsByOrder;
        for (Change change : changes) {
            if (change instanceof Add add) {
                MemoryRegion region = add.region();
                if (byName.containsKey(region.name())) {
                    problems.add("region '" + region.name() + "' already exists");
                    continue;
                }
                Entry e = new Entry(region, nextOrder++);
                index(e);
                undo.log(e, true);
                order = FlatViewTree.put(order, e.order(), region);
            } else if (change instanceof Remove remove) {
                Entry e = byName.get(remove.name());
                if (e == null) {
                    problems.add("region '" + remove.name() + "' does not exist");
                    continue;
                }
                unindex(e);
                undo.log(e, false);
                order = FlatViewTree.remove(order, e.order());
            }
        }
        pending = undo;
        if (!problems.isEmpty()) {
            undo();
            return new Staged(problems, view, new FlatView.Diff(List.of(), List.of()), regionsByOrder, null);
        }
        List<long[]> windows = windows(undo);
        Splice splice = new Splice(view.tree());
        for (long[] w : windows) {
            splice.window(w[0], w[1], sweep(w[0], w[1]));
        }
        return new Staged(List.of(), new FlatView(splice.tree), splice.diff(), order, undo);
    }

    /** Make {@code staged} the current state. */
    public void accept(Staged staged) {
        check(staged);
        regionsByOrder = staged.order;
        view = staged.view();
        pending = null;
    }

    /** Drop {@code staged}: regions and view stay as they were before it. */
    public void reject(Staged staged) {
        check(staged);
        undo();
    }

    private void undo() {
        Pending undo = pending;
        for (int i = undo.entries().size() - 1; i >= 0; i--) {
            if (undo.added().get(i)) {
                unindex(undo.entries().get(i));
            } else {
                index(undo.entries().get(i));
            }
        }
        nextOrder = undo.orderBefore();
        pending = null;
    }

    private void check(Staged staged) {
        if (staged.pending == null || staged.pending != pending) {
            throw new IllegalStateException("not the staged commit of this editor: " + staged.problems());
        }
    }

    private void index(Entry e) {
        byName.put(e.region().name(), e);
        int c = sizeClass(e);
        if (bySize[c] == null) {
            bySize[c] = new TreeMap<>(BY_BASE);
        }
        bySize[c].put(e.key(), e);
    }

    private void unindex(Entry e) {
        byName.remove(e.region().name());
        bySize[sizeClass(e)].remove(e.key());
    }

    private static int sizeClass(Entry e) {
        return 64 - Long.numberOfLeadingZeros(e.region().range().size() - 1);
    }

    /** The ranges of the changed regions, sorted, with overlapping and touching ones merged. */
    private static List<long[]> windows(Pending undo) {
        List<long[]> ranges = new ArrayList<>();
        undo.entries().forEach(e -> ranges.add(new long[] {e.base(), e.last()}));
        ranges.sort((x, y) -> Long.compareUnsigned(x[0], y[0]));
        List<long[]> merged = new ArrayList<>();
        for (long[] r : ranges) {
            long[] last = merged.isEmpty() ? null : merged.get(merged.size() - 1);
            if (last != null && (last[1] == -1L || Long.compareUnsigned(r[0], last[1] + 1) <= 0)) {
                if (Long.compareUnsigned(r[1], last[1]) > 0) {
                    last[1] = r[1];
                }
            } else {
                merged.add(new long[] {r[0], r[1]});
            }
        }
        return merged;
    }

    /** The regions overlapping {@code [a, b]}. */
    private List<Entry> overlapping(long a, long b) {
        List<Entry> out = new ArrayList<>();
        for (int c = 0; c < bySize.length; c++) {
            TreeMap<Key, Entry> set = bySize[c];
            if (set == null || set.isEmpty()) {
                continue;
            }
            long reach = c == 64 ? -1L : (1L << c) - 1; // a region of this class spans at most reach + 1 bytes
            long from = Long.compareUnsigned(a, reach) <= 0 ? 0 : a - reach;
            for (Entry e : set.subMap(new Key(from, Long.MIN_VALUE), true, new Key(b, Long.MAX_VALUE), true)
                    .values()) {
                if (Long.compareUnsigned(e.last(), a) >= 0) {
                    out.add(e);
                }
            }
        }
        return out;
    }

    /** The sections of the new view inside {@code [a, b]}, coalesced, by the same sweep as {@link FlatView#of}. */
    private List<Section> sweep(long a, long b) {
        List<Entry> regions = overlapping(a, b);
        // Boundary events inside the window: clipped enter and leave points.
        List<long[]> events = new ArrayList<>(); // {point, +1 enter / -1 leave, index}
        for (int i = 0; i < regions.size(); i++) {
            Entry e = regions.get(i);
            long from = Long.compareUnsigned(e.base(), a) < 0 ? a : e.base();
            long to = Long.compareUnsigned(e.last(), b) > 0 ? b : e.last();
            events.add(new long[] {from, 1, i});
            if (to != -1L) {
                events.add(new long[] {to + 1, -1, i});
            }
        }
        events.sort((x, y) -> Long.compareUnsigned(x[0], y[0]));
        TreeSet<Entry> active = new TreeSet<>(WINNER);
        List<Section> out = new ArrayList<>();
        int p = 0;
        while (p < events.size()) {
            long at = events.get(p)[0];
            for (; p < events.size() && events.get(p)[0] == at; p++) {
                long[] ev = events.get(p);
                if (ev[1] > 0) {
                    active.add(regions.get((int) ev[2]));
                } else {
                    active.remove(regions.get((int) ev[2]));
                }
            }
            if (active.isEmpty() || (b != -1L && Long.compareUnsigned(at, b) > 0)) {
                continue;
            }
            long last = p < events.size() ? events.get(p)[0] - 1 : b;
            MemoryRegion winner = active.last().region();
            append(out, new Section(AddressRange.inclusive(at, last), winner, at - winner.range().base()));
        }
        return out;
    }

    private static void append(List<Section> out, Section piece) {
        if (!out.isEmpty()) {
            Section prev = out.get(out.size() - 1);
            if (prev.isContinuedBy(piece)) {
                out.set(out.size() - 1, joined(prev, piece));
                return;
            }
        }
        out.add(piece);
    }

    private static Section joined(Section prev, Section next) {
        return new Section(new AddressRange(prev.range().base(), prev.range().size() + next.range().size()),
                prev.region(), prev.offsetInRegion());
    }

    /** Splices recomputed windows into a persistent copy of the view and collects the net diff. */
    private static final class Splice {
        FlatViewTree<Section> tree;
        private final Set<Section> removed = new LinkedHashSet<>();
        private final Set<Section> added = new LinkedHashSet<>();

        Splice(FlatViewTree<Section> tree) {
            this.tree = tree;
        }

        void window(long a, long b, List<Section> pieces) {
            FlatViewTree<Section>[] lr = FlatViewTree.split(tree, a);
            FlatViewTree<Section> left = lr[0];
            FlatViewTree<Section> middle;
            FlatViewTree<Section> right;
            if (b == -1L) {
                middle = lr[1];
                right = null;
            } else {
                FlatViewTree<Section>[] mr = FlatViewTree.split(lr[1], b + 1);
                middle = mr[0];
                right = mr[1];
            }
            List<Section> old = new ArrayList<>();
            FlatViewTree<Section> straddler = FlatViewTree.max(left);
            if (straddler != null && Long.compareUnsigned(straddler.value.range().last(), a) >= 0) {
                old.add(straddler.value);
                left = FlatViewTree.split(left, straddler.key)[0];
            }
            FlatViewTree.iterator(middle).forEachRemaining(old::add);
            List<Section> fresh = new ArrayList<>();
            if (!old.isEmpty() && Long.compareUnsigned(old.get(0).range().base(), a) < 0) {
                Section s = old.get(0);
                fresh.add(new Section(AddressRange.inclusive(s.range().base(), a - 1), s.region(),
                        s.offsetInRegion()));
            }
            pieces.forEach(piece -> append(fresh, piece));
            if (!old.isEmpty()) {
                Section s = old.get(old.size() - 1);
                if (b != -1L && Long.compareUnsigned(s.range().last(), b) > 0) {
                    append(fresh, new Section(AddressRange.inclusive(b + 1, s.range().last()), s.region(),
                            s.offsetInRegion() + (b + 1 - s.range().base())));
                }
            }
            // The neighbours on either side may now continue into the first or last new section.
            FlatViewTree<Section> before = FlatViewTree.max(left);
            if (before != null && !fresh.isEmpty() && before.value.isContinuedBy(fresh.get(0))) {
                old.add(0, before.value);
                fresh.set(0, joined(before.value, fresh.get(0)));
                left = FlatViewTree.split(left, before.key)[0];
            }
            FlatViewTree<Section> after = FlatViewTree.min(right);
            if (after != null && !fresh.isEmpty() && fresh.get(fresh.size() - 1).isContinuedBy(after.value)) {
                old.add(after.value);
                fresh.set(fresh.size() - 1, joined(fresh.get(fresh.size() - 1), after.value));
                right = FlatViewTree.remove(right, after.key);
            }
            FlatViewTree<Section> built = null;
            for (Section s : fresh) {
                built = FlatViewTree.merge(built, FlatViewTree.leaf(s.range().base(), s));
            }
            tree = FlatViewTree.merge(FlatViewTree.merge(left, built), right);
            for (Section s : old) {
                if (!added.remove(s)) {
                    removed.add(s);
                }
            }
            for (Section s : fresh) {
                if (!removed.remove(s)) {
                    added.add(s);
                }
            }
        }

        FlatView.Diff diff() {
            List<Section> r = new ArrayList<>(removed);
            List<Section> a = new ArrayList<>(added);
            r.sort(null);
            a.sort(null);
            return new FlatView.Diff(r, a);
        }
    }
}
