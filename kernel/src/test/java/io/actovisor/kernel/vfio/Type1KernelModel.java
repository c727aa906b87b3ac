package io.actovisor.kernel.vfio;

import io.actovisor.memory.AddressRange;
import io.actovisor.memory.sys.Errno;
import io.actovisor.memory.sys.NativeBuffer;
import io.actovisor.memory.sys.NativeException;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * A pure-Java model of the kernel's type1v2 MAP_DMA/UNMAP_DMA rules (drivers/vfio/vfio_iommu_type1.c), installed
 * as the answer to those ioctls on a {@link RecordingPosix}. It is a model, named as one: it checks what the
 * kernel checks (argsz, flags, alignment to the smallest page size, IOVA ranges, overlap, the entry limit,
 * bisecting unmaps) and keeps the mapping table, so a test can compare the backend's bookkeeping with it.
 */
public final class Type1KernelModel {
    /** One mapping as the kernel holds it. */
    public record Mapping(long iova, long size, long vaddr, int flags) {
    }

    private final long pageSize;
    private final List<AddressRange> ranges;
    private final int limit;
    private final TreeMap<Long, Mapping> table = new TreeMap<>(Long::compareUnsigned);

    public Type1KernelModel(long pageSize, List<AddressRange> ranges, int limit) {
        this.pageSize = pageSize;
        this.ranges = List.copyOf(ranges);
        this.limit = limit;
    }

    /** Answer MAP_DMA, UNMAP_DMA and GET_INFO on {@code posix} from this model. */
    public RecordingPosix install(RecordingPosix posix) {
        posix.on("VFIO_IOMMU_MAP_DMA", (call, arg) -> map(arg.orElseThrow()));
        posix.on("VFIO_IOMMU_UNMAP_DMA", (call, arg) -> unmap(arg.orElseThrow()));
        posix.on("VFIO_IOMMU_GET_INFO", (call, arg) -> {
            ScriptedVfioHost.writeIommuInfo(arg.orElseThrow(), ranges, limit - table.size());
            NativeBuffer info = arg.orElseThrow();
            info.putLong(VfioAbi.IommuType1Info.IOVA_PGSIZES, pageSize);
            return 0;
        });
        return posix;
    }

    public Map<Long, Mapping> table() {
        return Map.copyOf(table);
    }

    private static NativeException error(String ioctl, int errno) {
        return new NativeException("ioctl(" + ioctl + ")", errno);
    }

    private long map(NativeBuffer map) {
        String name = "VFIO_IOMMU_MAP_DMA";
        if (map.getInt(VfioAbi.DmaMap.ARGSZ) < VfioAbi.DmaMap.SIZE) {
            throw error(name, Errno.EINVAL);
        }
        int flags = map.getInt(VfioAbi.DmaMap.FLAGS);
        long vaddr = map.getLong(VfioAbi.DmaMap.VADDR);
        long iova = map.getLong(VfioAbi.DmaMap.IOVA);
        long size = map.getLong(VfioAbi.DmaMap.MAP_SIZE);
        int prot = flags & (VfioAbi.DmaMap.FLAG_READ | VfioAbi.DmaMap.FLAG_WRITE);
        if (prot == 0 || size == 0 || ((size | iova | vaddr) & (pageSize - 1)) != 0) {
            throw error(name, Errno.EINVAL);
        }
        if (Long.compareUnsigned(iova + size - 1, iova) < 0 || Long.compareUnsigned(vaddr + size - 1, vaddr) < 0) {
            throw error(name, Errno.EINVAL);
        }
        AddressRange range = AddressRange.of(iova, size);
        if (overlapsAny(range)) {
            throw error(name, Errno.EEXIST);
        }
        if (table.size() >= limit) {
            throw error(name, Errno.ENOSPC);
        }
        if (ranges.stream().noneMatch(r -> r.contains(range))) {
            throw error(name, Errno.EINVAL);
        }
        table.put(iova, new Mapping(iova, size, vaddr, prot));
        return 0;
    }

    private boolean overlapsAny(AddressRange range) {
        return table.values().stream().anyMatch(m -> AddressRange.of(m.iova(), m.size()).overlaps(range));
    }

    private long unmap(NativeBuffer unmap) {
        String name = "VFIO_IOMMU_UNMAP_DMA";
        if (unmap.getInt(VfioAbi.DmaUnmap.ARGSZ) < VfioAbi.DmaUnmap.SIZE || unmap.getInt(VfioAbi.DmaUnmap.FLAGS) != 0) {
            throw error(name, Errno.EINVAL);
        }
        long iova = unmap.getLong(VfioAbi.DmaUnmap.IOVA);
        long size = unmap.getLong(VfioAbi.DmaUnmap.UNMAP_SIZE);
        if (size == 0 || ((iova | size) & (pageSize - 1)) != 0 || Long.compareUnsigned(iova + size - 1, iova) < 0) {
            throw error(name, Errno.EINVAL);
        }
        AddressRange range = AddressRange.of(iova, size);
        // type1v2: an unmap may not bisect a mapping at either end.
        for (Mapping m : table.values()) {
            AddressRange mapped = AddressRange.of(m.iova(), m.size());
            if (mapped.overlaps(range) && !range.contains(mapped)) {
                throw error(name, Errno.EINVAL);
            }
        }
        long unmapped = 0;
        for (Mapping m : List.copyOf(table.values())) {
            if (range.contains(AddressRange.of(m.iova(), m.size()))) {
                table.remove(m.iova());
                unmapped += m.size();
            }
        }
        unmap.putLong(VfioAbi.DmaUnmap.UNMAP_SIZE, unmapped);
        return 0;
    }
}
