package io.actovisor.devices.iommu;

import io.actovisor.memory.AddressRange;
import io.actovisor.memory.HostAddress;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * The mapping table of one IOMMU context with VFIO type1 rules, in pure Java: what the {@code model} backend is and
 * what the {@code pinned} backend checks before it touches the kernel. The rules are those of {@link Iommu}:
 * alignment to the smallest page size, IOVA inside the usable ranges, no overlap (EEXIST), at most
 * {@link IommuInfo#maxMappings()} entries (ENOSPC), and an unmap removes the mappings wholly inside its range while
 * refusing one that would cut a mapping in two (type1v2).
 *
 * <p>Every check happens before any change, so a refused operation leaves the table as it was. Not thread-safe.
 */
public final class Type1MappingTable {
    private IommuInfo info;
    private final TreeMap<Long, DmaMapping> byIova = new TreeMap<>(Long::compareUnsigned);
    private long mappedBytes;

    public Type1MappingTable(IommuInfo info) {
        this.info = info;
    }

    public IommuInfo info() {
        return info;
    }

    /** The IOMMU's page sizes, limit or ranges changed (a vfio-type1 group joined or left): check against these. */
    public void setInfo(IommuInfo info) {
        this.info = java.util.Objects.requireNonNull(info, "info");
    }

    /**
     * Check that {@code iova -> host} may be mapped now, without mapping it.
     *
     * @throws IommuException MISALIGNED, OUT_OF_RANGE, OVERLAP or LIMIT
     */
    public void checkMap(AddressRange iova, HostAddress host) {
        long page = info.minPageSize();
        if ((iova.base() & (page - 1)) != 0 || (iova.size() & (page - 1)) != 0 || (host.value() & (page - 1)) != 0) {
            throw new IommuException(IommuException.Kind.MISALIGNED, iova, "cannot map IOVA " + iova + " to host "
                    + host + ": IOVA, size and host address must be aligned to the IOMMU page size 0x"
                    + Long.toHexString(page));
        }
        if (info.iovaRanges().stream().noneMatch(r -> r.contains(iova))) {
            throw new IommuException(IommuException.Kind.OUT_OF_RANGE, iova, "cannot map IOVA " + iova
                    + ": it is not inside one of the usable IOVA ranges " + info.iovaRanges());
        }
        overlapping(iova).stream().findFirst().ifPresent(existing -> {
            throw new IommuException(IommuException.Kind.OVERLAP, iova, "cannot map IOVA " + iova
                    + ": it overlaps the existing mapping " + existing.iova() + " (EEXIST)");
        });
        if (byIova.size() >= info.maxMappings()) {
            throw new IommuException(IommuException.Kind.LIMIT, iova, "cannot map IOVA " + iova + ": the context "
                    + "already holds its limit of " + info.maxMappings() + " mappings (ENOSPC)");
        }
    }

    /** Record a mapping that {@link #checkMap} accepted (and the backend then made). */
    public DmaMapping add(AddressRange iova, HostAddress host, DmaPermissions permissions) {
        checkMap(iova, host);
        DmaMapping mapping = new DmaMapping(iova, host, permissions);
        byIova.put(iova.base(), mapping);
        mappedBytes += iova.size();
        return mapping;
    }

    /**
     * The mappings an unmap of {@code iova} would remove, in IOVA order, without removing them.
     *
     * @throws IommuException PARTIAL_UNMAP if the range covers only part of a mapping
     */
    public List<DmaMapping> checkUnmap(AddressRange iova) {
        List<DmaMapping> inside = new ArrayList<>();
        for (DmaMapping m : overlapping(iova)) {
            if (!iova.contains(m.iova())) {
                throw new IommuException(IommuException.Kind.PARTIAL_UNMAP, iova, "cannot unmap IOVA " + iova
                        + ": it covers only part of the mapping " + m.iova()
                        + "; unmap whole mappings (type1v2 refuses to split them)");
            }
            inside.add(m);
        }
        return inside;
    }

    /** Remove what {@link #checkUnmap} listed for {@code iova} and return it. */
    public List<DmaMapping> remove(AddressRange iova) {
        List<DmaMapping> inside = checkUnmap(iova);
        for (DmaMapping m : inside) {
            byIova.remove(m.iova().base());
            mappedBytes -= m.iova().size();
        }
        return inside;
    }

    /** Remove everything, returning it in IOVA order. */
    public List<DmaMapping> clear() {
        List<DmaMapping> all = List.copyOf(byIova.values());
        byIova.clear();
        mappedBytes = 0;
        return all;
    }

    /** The mapping that covers {@code iova}, or null. */
    public DmaMapping find(long iova) {
        Map.Entry<Long, DmaMapping> e = byIova.floorEntry(iova);
        if (e == null || !e.getValue().iova().contains(iova)) {
            return null;
        }
        return e.getValue();
    }

    public List<DmaMapping> mappings() {
        return Collections.unmodifiableList(new ArrayList<>(byIova.values()));
    }

    public int size() {
        return byIova.size();
    }

    /** Bytes covered by mappings. */
    public long mappedBytes() {
        return mappedBytes;
    }

    private List<DmaMapping> overlapping(AddressRange range) {
        List<DmaMapping> out = new ArrayList<>();
        Map.Entry<Long, DmaMapping> before = byIova.floorEntry(range.base());
        if (before != null && before.getValue().iova().overlaps(range)) {
            out.add(before.getValue());
        }
        long last = range.last();
        for (DmaMapping m : byIova.tailMap(range.base(), false).values()) {
            if (Long.compareUnsigned(m.iova().base(), last) > 0) {
                break;
            }
            out.add(m);
        }
        return out;
    }
}
