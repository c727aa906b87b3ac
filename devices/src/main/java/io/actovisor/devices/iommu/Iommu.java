package io.actovisor.devices.iommu;

import io.actovisor.memory.AddressRange;
import io.actovisor.memory.HostAddress;
import java.util.List;
import java.util.Optional;

/**
 * One IOMMU context (a VFIO container's address space) with VFIO type1 semantics. Backends: {@code model} (pure
 * Java bookkeeping), {@code pinned} (real long-term pins through io_uring fixed buffers) and {@code vfio-type1}
 * (the kernel's VFIO type1 driver).
 *
 * <p>Rules every backend follows (the shared contract test holds them to it):
 * <ul>
 *   <li>{@link #map} pins the host pages and maps IOVA to them, as type1's MAP_DMA does; IOVA, host address and
 *       size must be aligned to the smallest page size in {@link IommuInfo#pageSizes()}, else
 *       {@link IommuException.Kind#MISALIGNED}.</li>
 *   <li>A map that overlaps an existing mapping is refused with {@link IommuException.Kind#OVERLAP} (EEXIST) and
 *       changes nothing.</li>
 *   <li>More than {@link IommuInfo#maxMappings()} mappings is refused with {@link IommuException.Kind#LIMIT}
 *       (ENOSPC).</li>
 *   <li>{@link #unmap} removes every mapping that lies entirely inside the range and returns them; unmapping a
 *       range with no mappings returns an empty list. A range that cuts a mapping in two (covers only part of it)
 *       is refused with {@link IommuException.Kind#PARTIAL_UNMAP} and changes nothing (type1v2 semantics).</li>
 *   <li>{@link #unmap} unpins what it unmaps; {@link #close()} unmaps and unpins everything, idempotently.</li>
 * </ul>
 * Implementations are single-owner and not thread-safe: one actor owns each and calls it from one thread at a time.
 */
public interface Iommu extends AutoCloseable {
    /** The backend's name as configured: {@code model}, {@code pinned} or {@code vfio-type1}. */
    String backend();

    /** Page sizes, mapping limit and usable IOVA ranges. */
    IommuInfo info();

    /** Pin {@code iova.size()} bytes at {@code host} and map them at {@code iova}. */
    void map(AddressRange iova, HostAddress host, DmaPermissions permissions);

    /** Unmap (and unpin) every mapping inside {@code iova}; returns what was unmapped, in IOVA order. */
    List<DmaMapping> unmap(AddressRange iova);

    /** The current mappings in IOVA order. */
    List<DmaMapping> mappings();

    /** Bytes currently pinned by this context. */
    long pinnedBytes();

    /**
     * The device data path through this context, where the backend has one ({@code pinned}: io_uring fixed buffers;
     * {@code vfio-type1}: the device itself does DMA). The model has none: it cannot see real pins.
     */
    default Optional<DmaPort> dmaPort() {
        return Optional.empty();
    }

    /** Unmap and unpin everything and release the backend's kernel objects. Idempotent. */
    @Override
    void close();
}
