package io.actovisor.kernel.vfio;

import io.actovisor.memory.AddressRange;
import java.util.List;
import java.util.Optional;

/**
 * What {@code VFIO_DEVICE_GET_REGION_INFO} reported for one region (a BAR, the ROM, PCI config space).
 *
 * @param index       the region index ({@link VfioAbi.Pci#BAR0_REGION_INDEX} ...)
 * @param flags       {@link VfioAbi.RegionInfo#FLAG_READ}, {@code FLAG_WRITE}, {@code FLAG_MMAP}, {@code FLAG_CAPS}
 * @param size        the region size in bytes; 0 for an unimplemented region (an absent BAR)
 * @param offset      where the region starts in the device fd, for pread/pwrite/mmap
 * @param sparseMmap  the parts that may be mmap'ed, when the kernel restricts it (e.g. around an MSI-X table);
 *                    empty when the whole region may be mapped
 * @param chain       every capability reported
 */
public record VfioRegionInfo(int index, int flags, long size, long offset, Optional<List<AddressRange>> sparseMmap,
        CapabilityChain chain) {
    public VfioRegionInfo {
        sparseMmap = sparseMmap.map(List::copyOf);
    }

    public boolean readable() {
        return (flags & VfioAbi.RegionInfo.FLAG_READ) != 0;
    }

    public boolean writable() {
        return (flags & VfioAbi.RegionInfo.FLAG_WRITE) != 0;
    }

    public boolean mappable() {
        return (flags & VfioAbi.RegionInfo.FLAG_MMAP) != 0;
    }
}
