package io.actovisor.benchmarks;

import io.actovisor.devices.iommu.DmaPermissions;
import io.actovisor.devices.iommu.Iommu;
import io.actovisor.memory.FlatView;
import io.actovisor.memory.MemoryRegion;
import io.actovisor.memory.Section;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The baseline: the same bookkeeping a Java user would write without actors, one {@code synchronized} class that
 * keeps the regions, recomputes the flat view, diffs it and applies the diff to an IOMMU under one lock.
 */
public final class LockedTopology {
    private final Map<String, MemoryRegion> regions = new LinkedHashMap<>();
    private final Iommu iommu;
    private FlatView view = FlatView.empty();

    public LockedTopology(Iommu iommu) {
        this.iommu = iommu;
    }

    /** Add and remove regions in one step; returns the number of sections changed. */
    public synchronized int commit(List<MemoryRegion> add, List<String> remove) {
        Map<String, MemoryRegion> next = new LinkedHashMap<>(regions);
        remove.forEach(next::remove);
        add.forEach(r -> next.put(r.name(), r));
        FlatView newView = FlatView.of(List.copyOf(next.values()));
        FlatView.Diff diff = FlatView.diff(view, newView);
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
        regions.clear();
        regions.putAll(next);
        view = newView;
        return diff.removed().size() + diff.added().size();
    }
}
