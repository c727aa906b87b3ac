package io.actovisor.kernel.vfio;

import io.actovisor.memory.AddressRange;
import io.actovisor.memory.sys.Errno;
import io.actovisor.memory.sys.NativeBuffer;
import io.actovisor.memory.sys.NativeException;
import io.actovisor.memory.sys.Posix;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.OptionalInt;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The owner of one {@code /dev/vfio/vfio} file descriptor: one IOMMU context. Opening checks the API version and
 * picks the type1 IOMMU flavour (v2 preferred); the IOMMU itself is set when the first group attaches, because
 * the kernel accepts {@code VFIO_SET_IOMMU} only then. Groups attach through {@link #attach(VfioGroup)}.
 *
 * <p>Single owner, not thread-safe; {@link #close()} is idempotent and detaches every group still attached.
 */
public final class VfioContainer implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(VfioContainer.class);
    /** Capability replies never legitimately approach this; a bigger argsz means a confused kernel or double. */
    private static final int MAX_INFO_SIZE = 1 << 16;

    private final Posix posix;
    private final Path root;
    private final int fd;
    private final int iommuType;
    private final Map<Integer, VfioGroup> groups = new LinkedHashMap<>();
    private boolean iommuSet;
    private boolean closed;

    private VfioContainer(Posix posix, Path root, int fd, int iommuType) {
        this.posix = posix;
        this.root = root;
        this.fd = fd;
        this.iommuType = iommuType;
    }

    /** Open {@code /dev/vfio/vfio}. */
    public static VfioContainer open(Posix posix) {
        return open(posix, Vfio.DEFAULT_ROOT);
    }

    /**
     * Open {@code <root>/vfio}, check {@code VFIO_GET_API_VERSION} and the type1 extensions. Throws
     * {@link VfioException} with the reason (no VFIO, no permission, not a container, no type1); on failure
     * nothing stays open.
     */
    public static VfioContainer open(Posix posix, Path root) {
        Path path = root.resolve("vfio");
        int fd = Vfio.openVfioFile(posix, root, path, "the VFIO container");
        try {
            long version;
            try {
                version = posix.ioctl(fd, VfioIoctls.VFIO_GET_API_VERSION, 0);
            } catch (NativeException e) {
                throw new VfioException(VfioException.Reason.NOT_A_CONTAINER,
                        path + " is not a VFIO container: " + e.getMessage(), e);
            }
            if (version != VfioAbi.Api.VFIO_API_VERSION) {
                throw new VfioException(VfioException.Reason.NOT_A_CONTAINER, path + " speaks VFIO API version "
                        + version + "; actovisor speaks version " + VfioAbi.Api.VFIO_API_VERSION);
            }
            int type;
            if (extension(posix, fd, VfioAbi.Api.VFIO_TYPE1v2_IOMMU)) {
                type = VfioAbi.Api.VFIO_TYPE1v2_IOMMU;
            } else if (extension(posix, fd, VfioAbi.Api.VFIO_TYPE1_IOMMU)) {
                type = VfioAbi.Api.VFIO_TYPE1_IOMMU;
            } else {
                throw new VfioException(VfioException.Reason.NO_TYPE1, path + " supports neither VFIO_TYPE1v2_IOMMU"
                        + " nor VFIO_TYPE1_IOMMU (is vfio_iommu_type1 loaded? modprobe vfio_iommu_type1)");
            }
            return new VfioContainer(posix, root, fd, type);
        } catch (RuntimeException e) {
            closeQuietly(posix, fd, e);
            throw e;
        }
    }

    private static boolean extension(Posix posix, int fd, int extension) {
        return posix.ioctl(fd, VfioIoctls.VFIO_CHECK_EXTENSION, extension) > 0;
    }

    static void closeQuietly(Posix posix, int fd, Throwable primary) {
        try {
            posix.close(fd);
        } catch (RuntimeException e) {
            primary.addSuppressed(e);
        }
    }

    /** The container's file descriptor. */
    public int fd() {
        return fd;
    }

    /** The directory the container and its groups live in ({@code /dev/vfio} on a real host). */
    public Path root() {
        return root;
    }

    /** {@link VfioAbi.Api#VFIO_TYPE1v2_IOMMU} or {@link VfioAbi.Api#VFIO_TYPE1_IOMMU}. */
    public int iommuType() {
        return iommuType;
    }

    /** Whether the type1 IOMMU is set (a group is attached). */
    public boolean iommuSet() {
        return iommuSet;
    }

    /** Whether the container supports {@code extension} ({@code VFIO_CHECK_EXTENSION}). */
    public boolean checkExtension(int extension) {
        ensureOpen();
        return extension(posix, fd, extension);
    }

    /** The attached groups, in attach order. */
    public List<VfioGroup> groups() {
        return List.copyOf(groups.values());
    }

    /**
     * Attach {@code group} ({@code VFIO_GROUP_SET_CONTAINER}) and, for the first group, set the type1 IOMMU
     * ({@code VFIO_SET_IOMMU}). If setting the IOMMU fails the group is detached again.
     */
    public void attach(VfioGroup group) {
        ensureOpen();
        if (groups.containsKey(group.id())) {
            throw new IllegalStateException("IOMMU group " + group.id() + " is already attached to this container");
        }
        group.setContainer(this);
        if (!iommuSet) {
            try {
                posix.ioctl(fd, VfioIoctls.VFIO_SET_IOMMU, iommuType);
            } catch (NativeException e) {
                try {
                    group.unsetContainer();
                } catch (RuntimeException suppressed) {
                    e.addSuppressed(suppressed);
                }
                throw new VfioException(VfioException.Reason.NATIVE, "cannot set the "
                        + typeName(iommuType) + " IOMMU on the container for group " + group.id() + ": "
                        + e.getMessage(), e);
            }
            iommuSet = true;
        }
        groups.put(group.id(), group);
    }

    /** Detach {@code group}; detaching the last group resets the IOMMU, dropping every mapping (kernel rule). */
    public void detach(VfioGroup group) {
        if (groups.remove(group.id()) == null) {
            throw new IllegalStateException("IOMMU group " + group.id() + " is not attached to this container");
        }
        try {
            group.unsetContainer();
        } finally {
            if (groups.isEmpty()) {
                iommuSet = false;
            }
        }
    }

    /**
     * {@code VFIO_IOMMU_GET_INFO} with its capability chain. The kernel reports the size it needs in argsz: the
     * first call uses the bare structure, and if argsz grew the call is repeated with a buffer that large.
     */
    public VfioIommuInfo iommuInfo() {
        ensureIommu("VFIO_IOMMU_GET_INFO");
        int size = VfioAbi.IommuType1Info.SIZE;
        for (int attempt = 0; attempt < 3; attempt++) {
            try (NativeBuffer info = NativeBuffer.allocate(size)) {
                info.putInt(VfioAbi.IommuType1Info.ARGSZ, size);
                posix.ioctl(fd, VfioIoctls.VFIO_IOMMU_GET_INFO, info.address());
                int needed = info.getInt(VfioAbi.IommuType1Info.ARGSZ);
                int flags = info.getInt(VfioAbi.IommuType1Info.FLAGS);
                if (Integer.compareUnsigned(needed, size) > 0 && (flags & VfioAbi.IommuType1Info.FLAG_CAPS) != 0) {
                    if (Integer.compareUnsigned(needed, MAX_INFO_SIZE) > 0) {
                        throw new VfioException(VfioException.Reason.NATIVE, "VFIO_IOMMU_GET_INFO asks for an "
                                + Integer.toUnsignedString(needed) + "-byte buffer; at most " + MAX_INFO_SIZE
                                + " is plausible");
                    }
                    size = needed;
                    continue;
                }
                return parseInfo(info, flags);
            }
        }
        throw new VfioException(VfioException.Reason.NATIVE,
                "VFIO_IOMMU_GET_INFO kept growing its argsz; last asked for " + size + " bytes");
    }

    private static VfioIommuInfo parseInfo(NativeBuffer info, int flags) {
        long pageSizes = (flags & VfioAbi.IommuType1Info.FLAG_PGSIZES) != 0
                ? info.getLong(VfioAbi.IommuType1Info.IOVA_PGSIZES) : 0;
        CapabilityChain chain = CapabilityChain.empty();
        if ((flags & VfioAbi.IommuType1Info.FLAG_CAPS) != 0 && info.size() > VfioAbi.IommuType1Info.CAP_OFFSET) {
            chain = CapabilityChain.walk(info, info.getInt(VfioAbi.IommuType1Info.CAP_OFFSET),
                    VfioAbi.IommuType1Info.SIZE, "VFIO_IOMMU_GET_INFO");
        }
        Optional<List<AddressRange>> ranges = chain.find(VfioAbi.IommuType1Info.CAP_IOVA_RANGE)
                .map(cap -> iovaRanges(info, cap.offset()));
        OptionalInt avail = chain.find(VfioAbi.IommuType1Info.CAP_DMA_AVAIL)
                .map(cap -> {
                    requireInside(info, cap.offset(), VfioAbi.DmaAvailCap.SIZE, "DMA-available capability");
                    return OptionalInt.of(info.getInt(cap.offset() + VfioAbi.DmaAvailCap.AVAIL));
                })
                .orElse(OptionalInt.empty());
        return new VfioIommuInfo(flags, pageSizes, ranges, avail, chain);
    }

    private static List<AddressRange> iovaRanges(NativeBuffer info, int at) {
        requireInside(info, at, VfioAbi.IovaRangeCap.SIZE, "IOVA-range capability");
        long count = Integer.toUnsignedLong(info.getInt(at + VfioAbi.IovaRangeCap.NR_IOVAS));
        requireInside(info, at, VfioAbi.IovaRangeCap.SIZE + count * VfioAbi.IovaRange.SIZE,
                "IOVA-range capability with " + count + " ranges");
        List<AddressRange> out = new ArrayList<>();
        for (int i = 0; i < count; i++) {
            int entry = at + VfioAbi.IovaRangeCap.IOVA_RANGES + i * VfioAbi.IovaRange.SIZE;
            long start = info.getLong(entry + VfioAbi.IovaRange.START);
            long end = info.getLong(entry + VfioAbi.IovaRange.END);
            if (Long.compareUnsigned(end, start) < 0) {
                throw new VfioException(VfioException.Reason.NATIVE, "VFIO_IOMMU_GET_INFO reported the reversed"
                        + " IOVA range 0x" + Long.toHexString(start) + "..0x" + Long.toHexString(end));
            }
            if (start == 0 && end == -1L) {
                // The whole 64-bit space has no 64-bit size: describe it as its two halves.
                out.add(AddressRange.of(0, Long.MIN_VALUE));
                out.add(AddressRange.of(Long.MIN_VALUE, Long.MIN_VALUE));
            } else {
                out.add(AddressRange.inclusive(start, end));
            }
        }
        return out;
    }

    private static void requireInside(NativeBuffer info, int at, long size, String what) {
        if (at + size > info.size()) {
            throw new VfioException(VfioException.Reason.NATIVE, "VFIO_IOMMU_GET_INFO returned a " + what
                    + " at offset " + at + " that runs past the " + info.size() + "-byte reply");
        }
    }

    /**
     * {@code VFIO_IOMMU_MAP_DMA}: pin {@code size} bytes at host address {@code vaddr} and map them at
     * {@code iova}. {@code flags} are {@link VfioAbi.DmaMap#FLAG_READ} / {@code FLAG_WRITE}. Throws the
     * {@link NativeException} of the ioctl when the kernel refuses, for the caller to classify.
     */
    public void mapDma(long vaddr, long iova, long size, int flags) {
        ensureIommu("VFIO_IOMMU_MAP_DMA");
        try (NativeBuffer map = NativeBuffer.allocate(VfioAbi.DmaMap.SIZE)) {
            map.putInt(VfioAbi.DmaMap.ARGSZ, VfioAbi.DmaMap.SIZE)
                    .putInt(VfioAbi.DmaMap.FLAGS, flags)
                    .putLong(VfioAbi.DmaMap.VADDR, vaddr)
                    .putLong(VfioAbi.DmaMap.IOVA, iova)
                    .putLong(VfioAbi.DmaMap.MAP_SIZE, size);
            posix.ioctl(fd, VfioIoctls.VFIO_IOMMU_MAP_DMA, map.address());
        }
    }

    /**
     * {@code VFIO_IOMMU_UNMAP_DMA} of {@code [iova, iova + size)}; returns the bytes the kernel reports unmapped.
     * Throws the ioctl's {@link NativeException} when the kernel refuses.
     */
    public long unmapDma(long iova, long size) {
        ensureIommu("VFIO_IOMMU_UNMAP_DMA");
        try (NativeBuffer unmap = NativeBuffer.allocate(VfioAbi.DmaUnmap.SIZE)) {
            unmap.putInt(VfioAbi.DmaUnmap.ARGSZ, VfioAbi.DmaUnmap.SIZE)
                    .putInt(VfioAbi.DmaUnmap.FLAGS, 0)
                    .putLong(VfioAbi.DmaUnmap.IOVA, iova)
                    .putLong(VfioAbi.DmaUnmap.UNMAP_SIZE, size);
            posix.ioctl(fd, VfioIoctls.VFIO_IOMMU_UNMAP_DMA, unmap.address());
            return unmap.getLong(VfioAbi.DmaUnmap.UNMAP_SIZE);
        }
    }

    private void ensureOpen() {
        if (closed) {
            throw new IllegalStateException("the VFIO container " + root.resolve("vfio") + " is closed");
        }
    }

    private void ensureIommu(String ioctl) {
        ensureOpen();
        if (!iommuSet) {
            throw new IllegalStateException(ioctl + " needs an IOMMU: attach a group to the container first");
        }
    }

    static String typeName(int type) {
        return switch (type) {
            case VfioAbi.Api.VFIO_TYPE1v2_IOMMU -> "VFIO_TYPE1v2_IOMMU";
            case VfioAbi.Api.VFIO_TYPE1_IOMMU -> "VFIO_TYPE1_IOMMU";
            default -> "IOMMU type " + type;
        };
    }

    /** Detach every group (closing their devices), then close the container fd. Idempotent. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        List<VfioGroup> attached = new ArrayList<>(groups.values());
        java.util.Collections.reverse(attached);
        for (VfioGroup group : attached) {
            try {
                group.unsetContainer();
            } catch (RuntimeException e) {
                LOG.warn("detaching IOMMU group {} while closing its container failed: {}", group.id(),
                        e.getMessage());
            }
        }
        groups.clear();
        iommuSet = false;
        try {
            posix.close(fd);
        } catch (NativeException e) {
            LOG.warn("closing the VFIO container fd {} failed: {} ({})", fd, e.getMessage(), Errno.name(e.errno()));
        }
    }
}
