package io.actovisor.kernel.vfio;

import io.actovisor.memory.AddressRange;
import java.util.List;
import java.util.Optional;
import java.util.OptionalInt;

/**
 * What {@code VFIO_IOMMU_GET_INFO} reported for a type1 container.
 *
 * @param flags        the reply's flags ({@link VfioAbi.IommuType1Info#FLAG_PGSIZES}, {@code FLAG_CAPS})
 * @param pageSizes    bitmap of supported IOMMU page sizes (bit n: 2^n bytes)
 * @param iovaRanges   the usable IOVA ranges from the IOVA-range capability; empty when the kernel did not report
 *                     the capability (kernels before 5.4), in which case every IOVA is allowed
 * @param dmaAvailable how many more DMA mappings the container accepts now (the DMA-available capability, 5.10+)
 * @param chain        every capability the kernel reported, including ones not interpreted here
 */
public record VfioIommuInfo(int flags, long pageSizes, Optional<List<AddressRange>> iovaRanges,
        OptionalInt dmaAvailable, CapabilityChain chain) {
    public VfioIommuInfo {
        iovaRanges = iovaRanges.map(List::copyOf);
    }
}
