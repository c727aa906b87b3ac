package io.actovisor.benchmarks;

import io.actovisor.devices.iommu.DmaPermissions;
import io.actovisor.devices.iommu.Iommu;
import io.actovisor.memory.FlatView;
import io.actovisor.memory.FlatViewEditor;
import io.actovisor.memory.MemoryRegion;
import io.actovisor.memory.Section;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The baseline: the same bookkeeping a Java user would write without actors, one {@code synchronized} class that
 * keeps the regions, computes the new flat view and its diff and applies the diff to an IOMMU under one lock.
 * {@link #wholeRebuild}: the view is rebuilt and diffed whole on every commit (QEMU's way, O(n));
 * {@link #incremental}: the same {@link FlatViewEditor} the address space actor uses (O(k log n)).
 */
public final class LockedTopology {
    private final Map<String, MemoryRegion> regions = new LinkedHashMap<>();
    private final FlatViewEditor editor;
    private final Iommu iommu;
    private FlatView view = FlatView.empty();

    private LockedTopology(Iommu iommu, boolean incremental) {
        this.iommu = iommu;
        this.editor = incremental ? new FlatViewEditor() : null;
    }

    public static LockedTopology wholeRebuild(Iommu iommu) {
        return new LockedTopology(iommu, false);
    }

    public static LockedTopology incremental(Iommu iommu) {
        return new LockedTopology(iommu, true);
    }

    /** Add and remove regions in one step; returns the number of sections changed. */
    public synchronized int commit(List<MemoryRegion> add, List<String> remove) {
        FlatView.Diff diff;
        if (editor != null) {
            List<FlatViewEditor.Change> changes = new ArrayList<>(add.size() + remove.size());
            remove.forEach(name -> changes.add(new FlatViewEditor.Remove(name)));
            add.forEach(r -> changes.add(new FlatViewEditor.Add(r)));
            FlatViewEditor.Staged staged = editor.stage(changes);
            if (!staged.isValid()) {
                throw new IllegalArgumentException(String.join("; ", staged.problems()));
            }
            diff = staged.diff();
            apply(diff);
            editor.accept(staged);
        } else {
            Map<String, MemoryRegion> next = new LinkedHashMap<>(regions);
            remove.forEach(next::remove);
            add.forEach(r -> next.put(r.name(), r));
            FlatView newView = FlatView.of(List.copyOf(next.values()));
            diff = FlatView.diff(view, newView);
            apply(diff);
            regions.clear();
            regions.putAll(next);
            view = newView;
        }
        return diff.removed().size() + diff.added().size();
    }

    private void apply(FlatView.Diff diff) {
        for (Section s : diff.removed()) {
            if (s.kind().isMemory()) {
                iommu.unmap(s.range());
            }
        }
        for (Section s : diff.added()) {
            if (s.kind().isMemory()) {
                iommu.map(s.range(), s.hostBase().orElseThrow(), DmaPermissions.READ_WRITE);
            }
        }
    }
}
