package io.actovisor.devices.iommu;

import io.actovisor.memory.AddressRange;
import java.util.List;

/**
 * What an IOMMU context supports, as VFIO_IOMMU_GET_INFO reports it.
 *
 * @param pageSizes   bitmap of supported page sizes (bit n set: 2^n bytes); the lowest bit is the granularity
 * @param maxMappings how many mappings the context accepts (type1's dma_entry_limit, 65535 by default)
 * @param iovaRanges  the IOVA ranges that may be mapped
 */
public record IommuInfo(long pageSizes, int maxMappings, List<AddressRange> iovaRanges) {
    public IommuInfo {
        if (pageSizes == 0) {
            throw new IllegalArgumentException("an IOMMU must support at least one page size");
        }
        iovaRanges = List.copyOf(iovaRanges);
    }

    /** The smallest supported page size: the granularity of every map and unmap. */
    public long minPageSize() {
        return Long.lowestOneBit(pageSizes);
    }
}
