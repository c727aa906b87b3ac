package io.actovisor.devices.iommu.model;

import io.actovisor.devices.iommu.DmaMapping;
import io.actovisor.devices.iommu.DmaPermissions;
import io.actovisor.devices.iommu.Iommu;
import io.actovisor.devices.iommu.IommuException;
import io.actovisor.devices.iommu.IommuInfo;
import io.actovisor.devices.iommu.Type1MappingTable;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.HostAddress;
import java.util.List;

/**
 * The {@code model} IOMMU backend: VFIO type1 bookkeeping in pure Java, for unit tests and for benchmarks of the
 * actor layer. It is a model: nothing is pinned and no device can read through it, so "pinned bytes" are the bytes
 * it would have pinned. Rules as in {@link Iommu}; unmapping part of a mapping is refused (type1v2), unmapping a
 * range that wholly covers mappings removes exactly those.
 */
public final class ModelIommu implements Iommu {
    /** The backend name in configuration. */
    public static final String BACKEND = "model";
    /** 4 KiB, 2 MiB and 1 GiB, as type1 reports on x86. */
    public static final long DEFAULT_PAGE_SIZES = (1L << 12) | (1L << 21) | (1L << 30);
    /** type1's default {@code dma_entry_limit}. */
    public static final int DEFAULT_MAX_MAPPINGS = 65535;
    /** A 48-bit IOVA space, as a 4-level VT-d page table gives. */
    public static final AddressRange DEFAULT_IOVA_RANGE = AddressRange.of(0, 1L << 48);

    private final Type1MappingTable table;
    private boolean closed;

    private ModelIommu(IommuInfo info) {
        this.table = new Type1MappingTable(info);
    }

    /** A model with type1's defaults: 4 KiB/2 MiB/1 GiB pages, 65535 mappings, a 48-bit IOVA space. */
    public static ModelIommu create() {
        return create(DEFAULT_MAX_MAPPINGS);
    }

    /** A model that accepts at most {@code maxMappings} mappings. */
    public static ModelIommu create(int maxMappings) {
        if (maxMappings < 1) {
            throw new IllegalArgumentException("max-mappings must be at least 1, was " + maxMappings);
        }
        return create(new IommuInfo(DEFAULT_PAGE_SIZES, maxMappings, List.of(DEFAULT_IOVA_RANGE)));
    }

    /** A model reporting exactly {@code info}. */
    public static ModelIommu create(IommuInfo info) {
        return new ModelIommu(info);
    }

    @Override
    public String backend() {
        return BACKEND;
    }

    @Override
    public IommuInfo info() {
        return table.info();
    }

    @Override
    public void map(AddressRange iova, HostAddress host, DmaPermissions permissions) {
        ensureOpen(iova);
        table.add(iova, host, permissions);
    }

    @Override
    public List<DmaMapping> unmap(AddressRange iova) {
        ensureOpen(iova);
        return table.remove(iova);
    }

    @Override
    public List<DmaMapping> mappings() {
        return table.mappings();
    }

    @Override
    public long pinnedBytes() {
        return table.mappedBytes();
    }

    @Override
    public void close() {
        closed = true;
        table.clear();
    }

    private void ensureOpen(AddressRange iova) {
        if (closed) {
            throw new IommuException(IommuException.Kind.CLOSED, iova, "the model IOMMU is closed");
        }
    }
}
