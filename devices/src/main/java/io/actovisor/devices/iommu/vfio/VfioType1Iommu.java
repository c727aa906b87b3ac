package io.actovisor.devices.iommu.vfio;

import io.actovisor.devices.iommu.DmaMapping;
import io.actovisor.devices.iommu.DmaPermissions;
import io.actovisor.devices.iommu.Iommu;
import io.actovisor.devices.iommu.IommuException;
import io.actovisor.devices.iommu.IommuInfo;
import io.actovisor.devices.iommu.Type1MappingTable;
import io.actovisor.kernel.vfio.Vfio;
import io.actovisor.kernel.vfio.VfioAbi;
import io.actovisor.kernel.vfio.VfioContainer;
import io.actovisor.kernel.vfio.VfioException;
import io.actovisor.kernel.vfio.VfioGroup;
import io.actovisor.kernel.vfio.VfioIommuInfo;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.HostAddress;
import io.actovisor.memory.sys.Errno;
import io.actovisor.memory.sys.NativeException;
import io.actovisor.memory.sys.Posix;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The {@code vfio-type1} IOMMU backend: a VFIO container with its groups, where {@link #map} is
 * {@code VFIO_IOMMU_MAP_DMA} (the kernel pins the pages and programs the IOMMU) and {@link #unmap} is
 * {@code VFIO_IOMMU_UNMAP_DMA}. The kernel is the authority on overlap and the mapping limit; the kernel's errno
 * becomes the {@link IommuException.Kind} of the shared contract (EEXIST: OVERLAP, ENOSPC: LIMIT, ENOMEM/EPERM/
 * EFAULT while pinning: PIN_FAILED, EINVAL on a misaligned request: MISALIGNED, anything else: NATIVE with the
 * ioctl and errno). Alignment, IOVA ranges and partial unmaps are checked here first, against what
 * {@code VFIO_IOMMU_GET_INFO} reported, so the error names the field and value instead of a bare EINVAL.
 *
 * <p>The kernel offers no way to list a container's mappings, so this object keeps the table of what it mapped, a
 * {@link Type1MappingTable}; {@link #mappings()} and {@link #pinnedBytes()} come from it, and it is the pre-check of
 * every map and unmap (overlap, mapping limit, partial unmap), so the kernel is asked only what type1 accepts.
 * Single owner, not thread-safe.
 */
public final class VfioType1Iommu implements Iommu {
    /** The backend name in configuration ({@code vfio.containers[].backend}). */
    public static final String BACKEND = "vfio-type1";
    /** type1's default {@code dma_entry_limit}, assumed when the kernel predates the DMA-available capability. */
    public static final int DEFAULT_DMA_ENTRY_LIMIT = 65535;

    private static final Logger LOG = LoggerFactory.getLogger(VfioType1Iommu.class);

    private final Posix posix;
    private final Path root;
    private final VfioContainer container;
    private final Map<Integer, VfioGroup> groups = new LinkedHashMap<>();
    /** What this context mapped; its info is replaced whenever the kernel's is read again. */
    private final Type1MappingTable table = new Type1MappingTable(new IommuInfo(1L << 12, DEFAULT_DMA_ENTRY_LIMIT,
            List.of(AddressRange.of(0, Long.MIN_VALUE), AddressRange.of(Long.MIN_VALUE, Long.MIN_VALUE))));
    private VfioIommuInfo kernelInfo;
    private IommuInfo info;
    private boolean closed;

    private VfioType1Iommu(Posix posix, Path root, VfioContainer container) {
        this.posix = posix;
        this.root = root;
        this.container = container;
    }

    /** Open a container on this host's {@code /dev/vfio} with {@code groupIds} attached. */
    public static VfioType1Iommu open(List<Integer> groupIds) {
        if (!Posix.isAvailable()) {
            throw new VfioException(VfioException.Reason.NO_VFIO, Posix.unavailabilityCause().orElseThrow());
        }
        return open(Posix.system(), Vfio.DEFAULT_ROOT, groupIds);
    }

    /**
     * Open the container under {@code root}, open and attach each group (the first attach sets the type1 IOMMU),
     * and read the IOMMU info. Any failure throws {@link VfioException} with the reason
     * and closes everything opened so far, in reverse order.
     */
    public static VfioType1Iommu open(Posix posix, Path root, List<Integer> groupIds) {
        if (groupIds.isEmpty()) {
            throw new IllegalArgumentException("vfio-type1 needs at least one IOMMU group in groups[], got none");
        }
        if (groupIds.stream().distinct().count() != groupIds.size()) {
            throw new IllegalArgumentException("groups[] lists an IOMMU group twice: " + groupIds);
        }
        VfioContainer container = VfioContainer.open(posix, root);
        VfioType1Iommu iommu = new VfioType1Iommu(posix, root, container);
        try {
            for (int id : groupIds) {
                iommu.attachGroup(id);
            }
            return iommu;
        } catch (RuntimeException e) {
            try {
                iommu.close();
            } catch (RuntimeException suppressed) {
                e.addSuppressed(suppressed);
            }
            throw e;
        }
    }

    /** Open IOMMU group {@code id} and attach it; the usable IOVA ranges are re-read afterwards. */
    public void attachGroup(int id) {
        ensureOpen(null);
        if (groups.containsKey(id)) {
            throw new IllegalStateException("IOMMU group " + id + " is already attached");
        }
        VfioGroup group = VfioGroup.open(posix, root, id);
        try {
            container.attach(group);
            groups.put(id, group);
            refreshInfo();
        } catch (RuntimeException e) {
            groups.remove(id);
            group.close();
            throw e;
        }
    }

    /**
     * Detach and close IOMMU group {@code id}. The last group may leave only when nothing is mapped: the kernel
     * drops the whole IOMMU context with it.
     */
    public void detachGroup(int id) {
        ensureOpen(null);
        VfioGroup group = groups.get(id);
        if (group == null) {
            throw new IllegalStateException("IOMMU group " + id + " is not attached; attached: " + groups.keySet());
        }
        if (groups.size() == 1 && table.size() > 0) {
            throw new IllegalStateException("IOMMU group " + id + " is the last group and " + table.size()
                    + " mappings remain; unmap them (or close the IOMMU) first");
        }
        groups.remove(id);
        group.close();
        if (groups.isEmpty()) {
            kernelInfo = null;
            info = null;
        } else {
            refreshInfo();
        }
    }

    /** The attached group ids, in attach order. */
    public List<Integer> groupIds() {
        return List.copyOf(groups.keySet());
    }

    /** The container, for opening devices through its groups. */
    public VfioContainer container() {
        return container;
    }

    /** The attached group {@code id}. */
    public VfioGroup group(int id) {
        VfioGroup group = groups.get(id);
        if (group == null) {
            throw new IllegalArgumentException("IOMMU group " + id + " is not attached; attached: " + groups.keySet());
        }
        return group;
    }

    /** What {@code VFIO_IOMMU_GET_INFO} last reported, with its capabilities. */
    public VfioIommuInfo kernelInfo() {
        ensureInfo();
        return kernelInfo;
    }

    private void refreshInfo() {
        VfioIommuInfo reported = container.iommuInfo();
        long pageSizes = reported.pageSizes();
        if (pageSizes == 0) {
            pageSizes = posix.pageSize();
            LOG.warn("VFIO_IOMMU_GET_INFO reported no page sizes; assuming the host page size {}", pageSizes);
        }
        int limit = reported.dmaAvailable().isPresent()
                ? (int) Math.min(Integer.MAX_VALUE,
                        Integer.toUnsignedLong(reported.dmaAvailable().getAsInt()) + table.size())
                : DEFAULT_DMA_ENTRY_LIMIT;
        List<AddressRange> ranges = reported.iovaRanges()
                .orElse(List.of(AddressRange.of(0, Long.MIN_VALUE), AddressRange.of(Long.MIN_VALUE, Long.MIN_VALUE)));
        kernelInfo = reported;
        info = new IommuInfo(pageSizes, limit, ranges);
        table.setInfo(info);
    }

    @Override
    public String backend() {
        return BACKEND;
    }

    @Override
    public IommuInfo info() {
        ensureInfo();
        return info;
    }

    @Override
    public void map(AddressRange iova, HostAddress host, DmaPermissions permissions) {
        ensureOpen(iova);
        ensureInfo();
        long page = info.minPageSize();
        checkAligned(iova, host, page, "map");
        if (info.iovaRanges().stream().noneMatch(r -> r.contains(iova))) {
            throw new IommuException(IommuException.Kind.OUT_OF_RANGE, iova, "cannot map IOVA " + iova
                    + ": it is not inside one of the usable IOVA ranges " + info.iovaRanges());
        }
        table.checkMap(iova, host); // overlap and the mapping limit, before the kernel pins anything
        int flags = (permissions.canRead() ? VfioAbi.DmaMap.FLAG_READ : 0)
                | (permissions.canWrite() ? VfioAbi.DmaMap.FLAG_WRITE : 0);
        try {
            container.mapDma(host.value(), iova.base(), iova.size(), flags);
        } catch (NativeException e) {
            throw classify(e, iova, host, page, table.size());
        }
        table.add(iova, host, permissions);
    }

    @Override
    public List<DmaMapping> unmap(AddressRange iova) {
        ensureOpen(iova);
        ensureInfo();
        long page = info.minPageSize();
        if (!iova.isAligned(page)) {
            throw new IommuException(IommuException.Kind.MISALIGNED, iova, "cannot unmap IOVA " + iova
                    + ": base and size must be aligned to the IOMMU page size 0x" + Long.toHexString(page));
        }
        List<DmaMapping> inside = table.checkUnmap(iova);
        List<DmaMapping> done = new ArrayList<>();
        for (DmaMapping m : inside) {
            long unmapped;
            try {
                unmapped = container.unmapDma(m.iova().base(), m.iova().size());
            } catch (NativeException e) {
                throw new IommuException(IommuException.Kind.NATIVE, m.iova(), "cannot unmap IOVA " + m.iova()
                        + (done.isEmpty() ? "" : " after unmapping " + done.size() + " mappings") + ": "
                        + e.getMessage(), e);
            }
            table.remove(m.iova());
            done.add(m);
            if (unmapped != m.iova().size()) {
                LOG.warn("VFIO_IOMMU_UNMAP_DMA of {} reported 0x{} bytes unmapped, expected 0x{}", m.iova(),
                        Long.toHexString(unmapped), Long.toHexString(m.iova().size()));
            }
        }
        return done;
    }

    private static void checkAligned(AddressRange iova, HostAddress host, long page, String op) {
        String field = (iova.base() & (page - 1)) != 0 ? "IOVA base " + iova
                : (iova.size() & (page - 1)) != 0 ? "size 0x" + Long.toHexString(iova.size())
                : (host.value() & (page - 1)) != 0 ? "host address " + host : null;
        if (field != null) {
            throw new IommuException(IommuException.Kind.MISALIGNED, iova, "cannot " + op + " IOVA " + iova + ": "
                    + field + " is not aligned to the IOMMU page size 0x" + Long.toHexString(page));
        }
    }

    /** The kernel's errno as the contract's kind; the message keeps the ioctl name and errno. */
    static IommuException classify(NativeException e, AddressRange iova, HostAddress host, long page,
            int mappings) {
        String what = "cannot map IOVA " + iova + " to host " + host + ": " + e.getMessage();
        return switch (e.errno()) {
            case Errno.EEXIST -> new IommuException(IommuException.Kind.OVERLAP, iova,
                    what + " (the range overlaps an existing mapping)", e);
            case Errno.ENOSPC -> new IommuException(IommuException.Kind.LIMIT, iova,
                    what + " (the container already holds " + mappings + " mappings, as many as type1's "
                            + "dma_entry_limit allows)", e);
            case Errno.ENOMEM -> new IommuException(IommuException.Kind.PIN_FAILED, iova,
                    what + " (pinning would exceed RLIMIT_MEMLOCK; raise it with ulimit -l, see docs/vfio.md)", e);
            case Errno.EPERM, Errno.EFAULT -> new IommuException(IommuException.Kind.PIN_FAILED, iova,
                    what + " (the host pages could not be pinned)", e);
            case Errno.EINVAL -> iova.isAligned(page) && host.isAligned(page)
                    ? new IommuException(IommuException.Kind.NATIVE, iova, what, e)
                    : new IommuException(IommuException.Kind.MISALIGNED, iova,
                            what + " (not aligned to the IOMMU page size 0x" + Long.toHexString(page) + ")", e);
            default -> new IommuException(IommuException.Kind.NATIVE, iova, what, e);
        };
    }

    @Override
    public List<DmaMapping> mappings() {
        return table.mappings();
    }

    @Override
    public long pinnedBytes() {
        return table.mappedBytes();
    }

    private void ensureOpen(AddressRange range) {
        if (closed) {
            throw new IommuException(IommuException.Kind.CLOSED, range, "the vfio-type1 IOMMU is closed");
        }
    }

    private void ensureInfo() {
        ensureOpen(null);
        if (info == null) {
            throw new IllegalStateException("the vfio-type1 IOMMU has no group attached, so no IOMMU is set");
        }
    }

    /** Unmap everything, detach and close the groups, close the container. Idempotent; failures are logged. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        if (info != null) {
            for (DmaMapping m : table.mappings()) {
                try {
                    container.unmapDma(m.iova().base(), m.iova().size());
                } catch (RuntimeException e) {
                    LOG.warn("unmapping {} while closing the vfio-type1 IOMMU failed: {}", m.iova(), e.getMessage());
                }
            }
        }
        table.clear();
        List<VfioGroup> reverse = new ArrayList<>(groups.values());
        Collections.reverse(reverse);
        for (VfioGroup group : reverse) {
            group.close();
        }
        groups.clear();
        container.close();
        info = null;
        kernelInfo = null;
    }
}
