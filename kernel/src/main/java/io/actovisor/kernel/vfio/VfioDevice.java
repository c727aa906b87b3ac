package io.actovisor.kernel.vfio;

import io.actovisor.memory.AddressRange;
import io.actovisor.memory.sys.Mman;
import io.actovisor.memory.sys.NativeBuffer;
import io.actovisor.memory.sys.NativeException;
import io.actovisor.memory.sys.Posix;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The owner of one VFIO device fd (from {@link VfioGroup#openDevice(String)}): device and region info, register
 * access to BARs and PCI config space by pread/pwrite at the region's offset in the fd, mmap of regions that allow
 * it, reset, and enabling bus mastering so the device may DMA through the container's IOMMU.
 *
 * <p>Single owner, not thread-safe. {@link #close()} unmaps the regions it mapped and closes the fd, idempotently.
 */
public final class VfioDevice implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(VfioDevice.class);
    private static final int MAX_INFO_SIZE = 1 << 16;

    private final Posix posix;
    private final int fd;
    private final String name;
    private final VfioGroup group;
    private final Map<Integer, VfioRegionInfo> regions = new HashMap<>();
    private final List<VfioRegionMapping> mappings = new ArrayList<>();
    private final List<VfioInterrupts> interrupts = new ArrayList<>();
    private VfioDeviceInfo info;
    private boolean closed;

    VfioDevice(Posix posix, int fd, String name, VfioGroup group) {
        this.posix = posix;
        this.fd = fd;
        this.name = name;
        this.group = group;
    }

    public String name() {
        return name;
    }

    public int fd() {
        return fd;
    }

    /** {@code VFIO_DEVICE_GET_INFO}, read once. */
    public VfioDeviceInfo info() {
        ensureOpen();
        if (info == null) {
            try (NativeBuffer buf = NativeBuffer.allocate(VfioAbi.DeviceInfo.SIZE)) {
                buf.putInt(VfioAbi.DeviceInfo.ARGSZ, VfioAbi.DeviceInfo.SIZE);
                ioctl(VfioIoctls.VFIO_DEVICE_GET_INFO, buf.address());
                info = new VfioDeviceInfo(buf.getInt(VfioAbi.DeviceInfo.FLAGS),
                        buf.getInt(VfioAbi.DeviceInfo.NUM_REGIONS), buf.getInt(VfioAbi.DeviceInfo.NUM_IRQS));
            }
        }
        return info;
    }

    /**
     * {@code VFIO_DEVICE_GET_REGION_INFO} for {@code index}, read once. When the region has capabilities the
     * kernel reports the size it needs in argsz and the call is repeated with a buffer that large.
     */
    public VfioRegionInfo regionInfo(int index) {
        ensureOpen();
        if (index < 0 || index >= info().numRegions()) {
            throw new IllegalArgumentException("device " + name + " has regions 0.." + (info().numRegions() - 1)
                    + "; region index " + index + " does not exist");
        }
        VfioRegionInfo cached = regions.get(index);
        if (cached != null) {
            return cached;
        }
        int size = VfioAbi.RegionInfo.SIZE;
        for (int attempt = 0; attempt < 3; attempt++) {
            try (NativeBuffer buf = NativeBuffer.allocate(size)) {
                buf.putInt(VfioAbi.RegionInfo.ARGSZ, size).putInt(VfioAbi.RegionInfo.INDEX, index);
                ioctl(VfioIoctls.VFIO_DEVICE_GET_REGION_INFO, buf.address());
                int needed = buf.getInt(VfioAbi.RegionInfo.ARGSZ);
                int flags = buf.getInt(VfioAbi.RegionInfo.FLAGS);
                if (Integer.compareUnsigned(needed, size) > 0 && (flags & VfioAbi.RegionInfo.FLAG_CAPS) != 0
                        && Integer.compareUnsigned(needed, MAX_INFO_SIZE) <= 0) {
                    size = needed;
                    continue;
                }
                VfioRegionInfo region = parseRegion(buf, index, flags);
                regions.put(index, region);
                return region;
            }
        }
        throw new VfioException(VfioException.Reason.NATIVE, "VFIO_DEVICE_GET_REGION_INFO for region " + index
                + " of " + name + " kept growing its argsz; last asked for " + size + " bytes");
    }

    private VfioRegionInfo parseRegion(NativeBuffer buf, int index, int flags) {
        CapabilityChain chain = CapabilityChain.empty();
        if ((flags & VfioAbi.RegionInfo.FLAG_CAPS) != 0) {
            chain = CapabilityChain.walk(buf, buf.getInt(VfioAbi.RegionInfo.CAP_OFFSET), VfioAbi.RegionInfo.SIZE,
                    "VFIO_DEVICE_GET_REGION_INFO");
        }
        Optional<List<AddressRange>> sparse = chain.find(VfioAbi.RegionInfo.CAP_SPARSE_MMAP).map(cap -> {
            int at = cap.offset();
            if (at + VfioAbi.SparseMmapCap.SIZE > buf.size()) {
                throw new VfioException(VfioException.Reason.NATIVE, "the sparse-mmap capability of region "
                        + index + " of " + name + " runs past the end of the reply");
            }
            long count = Integer.toUnsignedLong(buf.getInt(at + VfioAbi.SparseMmapCap.NR_AREAS));
            if (at + VfioAbi.SparseMmapCap.SIZE + count * VfioAbi.SparseMmapArea.SIZE > buf.size()) {
                throw new VfioException(VfioException.Reason.NATIVE, "the sparse-mmap capability of region "
                        + index + " of " + name + " lists " + count + " areas past the end of the reply");
            }
            List<AddressRange> areas = new ArrayList<>();
            for (int i = 0; i < count; i++) {
                int area = at + VfioAbi.SparseMmapCap.AREAS + i * VfioAbi.SparseMmapArea.SIZE;
                long areaSize = buf.getLong(area + VfioAbi.SparseMmapArea.AREA_SIZE);
                if (areaSize != 0) {
                    areas.add(AddressRange.of(buf.getLong(area + VfioAbi.SparseMmapArea.OFFSET), areaSize));
                }
            }
            return areas;
        });
        return new VfioRegionInfo(index, flags, buf.getLong(VfioAbi.RegionInfo.REGION_SIZE),
                buf.getLong(VfioAbi.RegionInfo.OFFSET), sparse, chain);
    }

    /** Read a 1-, 2-, 4- or 8-byte little-endian register at {@code offset} in region {@code index}. */
    public long read(int index, long offset, int width) {
        checkWidth(width);
        VfioRegionInfo region = access(index, offset, width, false);
        try (NativeBuffer buf = NativeBuffer.allocate(Long.BYTES)) {
            transfer(false, region, offset, buf, width);
            return switch (width) {
                case 1 -> Byte.toUnsignedLong(buf.getByte(0));
                case 2 -> Short.toUnsignedLong(buf.getShort(0));
                case 4 -> Integer.toUnsignedLong(buf.getInt(0));
                default -> buf.getLong(0);
            };
        }
    }

    /** Write a 1-, 2-, 4- or 8-byte little-endian register at {@code offset} in region {@code index}. */
    public void write(int index, long offset, int width, long value) {
        checkWidth(width);
        VfioRegionInfo region = access(index, offset, width, true);
        try (NativeBuffer buf = NativeBuffer.allocate(Long.BYTES)) {
            buf.putLong(0, value);
            transfer(true, region, offset, buf, width);
        }
    }

    /** Read {@code dst.length} bytes at {@code offset} in region {@code index}. */
    public void read(int index, long offset, byte[] dst) {
        VfioRegionInfo region = access(index, offset, dst.length, false);
        try (NativeBuffer buf = NativeBuffer.allocate(Math.max(1, dst.length))) {
            transfer(false, region, offset, buf, dst.length);
            buf.getBytes(0, dst, 0, dst.length);
        }
    }

    /** Write {@code src} at {@code offset} in region {@code index}. */
    public void write(int index, long offset, byte[] src) {
        VfioRegionInfo region = access(index, offset, src.length, true);
        try (NativeBuffer buf = NativeBuffer.allocate(Math.max(1, src.length))) {
            buf.putBytes(0, src);
            transfer(true, region, offset, buf, src.length);
        }
    }

    /** Read PCI config space ({@link VfioAbi.Pci#CONFIG_REGION_INDEX}). */
    public long readConfig(long offset, int width) {
        requirePci("config space");
        return read(VfioAbi.Pci.CONFIG_REGION_INDEX, offset, width);
    }

    /** Write PCI config space ({@link VfioAbi.Pci#CONFIG_REGION_INDEX}). */
    public void writeConfig(long offset, int width, long value) {
        requirePci("config space");
        write(VfioAbi.Pci.CONFIG_REGION_INDEX, offset, width, value);
    }

    /**
     * Set the Bus Master and Memory Space bits of the PCI command register (read-modify-write), so the device
     * may issue DMA and answer on its BARs. Returns the command register as it was before.
     */
    public int enableBusMaster() {
        int command = (int) readConfig(VfioAbi.Pci.COMMAND, 2);
        int wanted = command | VfioAbi.Pci.COMMAND_MASTER | VfioAbi.Pci.COMMAND_MEMORY;
        if (wanted != command) {
            writeConfig(VfioAbi.Pci.COMMAND, 2, wanted);
        }
        return command;
    }

    /** {@code VFIO_DEVICE_RESET}; refused with {@link VfioException.Reason#UNSUPPORTED} if the device has none. */
    public void reset() {
        if (!info().resettable()) {
            throw new VfioException(VfioException.Reason.UNSUPPORTED, "device " + name
                    + " does not support VFIO_DEVICE_RESET (VFIO_DEVICE_FLAGS_RESET is clear)");
        }
        ioctl(VfioIoctls.VFIO_DEVICE_RESET, 0);
    }

    /** {@code VFIO_DEVICE_GET_IRQ_INFO} for interrupt index {@code index}. */
    public VfioIrqInfo irqInfo(int index) {
        ensureOpen();
        if (index < 0 || index >= info().numIrqs()) {
            throw new IllegalArgumentException("device " + name + " has IRQ indexes 0.." + (info().numIrqs() - 1)
                    + "; IRQ index " + index + " does not exist");
        }
        try (NativeBuffer buf = NativeBuffer.allocate(VfioAbi.IrqInfo.SIZE)) {
            buf.putInt(VfioAbi.IrqInfo.ARGSZ, VfioAbi.IrqInfo.SIZE).putInt(VfioAbi.IrqInfo.INDEX, index);
            ioctl(VfioIoctls.VFIO_DEVICE_GET_IRQ_INFO, buf.address());
            return new VfioIrqInfo(index, buf.getInt(VfioAbi.IrqInfo.FLAGS), buf.getInt(VfioAbi.IrqInfo.COUNT));
        }
    }

    /**
     * Route vectors {@code 0..count-1} of interrupt index {@code index} to fresh eventfds
     * ({@code VFIO_DEVICE_SET_IRQS}, DATA_EVENTFD | ACTION_TRIGGER). On failure the eventfds are closed again.
     */
    public VfioInterrupts enableInterrupts(int index, int count) {
        VfioIrqInfo irq = irqInfo(index);
        if (irq.count() == 0) {
            throw new VfioException(VfioException.Reason.UNSUPPORTED, "device " + name + " does not implement IRQ"
                    + " index " + index + " (0 vectors)");
        }
        if (count <= 0 || count > irq.count()) {
            throw new IllegalArgumentException("IRQ index " + index + " of " + name + " has " + irq.count()
                    + " vectors; cannot enable " + count);
        }
        if (!irq.eventfd()) {
            throw new VfioException(VfioException.Reason.UNSUPPORTED, "IRQ index " + index + " of " + name
                    + " cannot signal an eventfd");
        }
        List<Integer> fds = new ArrayList<>();
        try {
            for (int i = 0; i < count; i++) {
                fds.add(posix.eventfd(0, VfioAbi.Eventfd.EFD_CLOEXEC));
            }
            int size = VfioAbi.IrqSet.SIZE + count * Integer.BYTES;
            try (NativeBuffer set = NativeBuffer.allocate(size)) {
                set.putInt(VfioAbi.IrqSet.ARGSZ, size)
                        .putInt(VfioAbi.IrqSet.FLAGS, VfioAbi.IrqSet.DATA_EVENTFD | VfioAbi.IrqSet.ACTION_TRIGGER)
                        .putInt(VfioAbi.IrqSet.INDEX, index).putInt(VfioAbi.IrqSet.START, 0)
                        .putInt(VfioAbi.IrqSet.COUNT, count);
                for (int i = 0; i < count; i++) {
                    set.putInt(VfioAbi.IrqSet.DATA + (long) i * Integer.BYTES, fds.get(i));
                }
                ioctl(VfioIoctls.VFIO_DEVICE_SET_IRQS, set.address());
            }
        } catch (RuntimeException e) {
            for (int fd : fds) {
                VfioContainer.closeQuietly(posix, fd, e);
            }
            throw e;
        }
        VfioInterrupts enabled = new VfioInterrupts(posix, this, index, fds);
        interrupts.add(enabled);
        return enabled;
    }

    /** Unmask INTx after the guest-side handler ran (the kernel automasks level-triggered INTx). */
    public void unmaskIntx() {
        irqSet(VfioAbi.IrqSet.DATA_NONE | VfioAbi.IrqSet.ACTION_UNMASK, VfioAbi.Pci.INTX_IRQ_INDEX, 1);
    }

    void disableInterrupts(int index) {
        irqSet(VfioAbi.IrqSet.DATA_NONE | VfioAbi.IrqSet.ACTION_TRIGGER, index, 0);
    }

    void forget(VfioInterrupts enabled) {
        interrupts.remove(enabled);
    }

    private void irqSet(int flags, int index, int count) {
        ensureOpen();
        try (NativeBuffer set = NativeBuffer.allocate(VfioAbi.IrqSet.SIZE)) {
            set.putInt(VfioAbi.IrqSet.ARGSZ, VfioAbi.IrqSet.SIZE).putInt(VfioAbi.IrqSet.FLAGS, flags)
                    .putInt(VfioAbi.IrqSet.INDEX, index).putInt(VfioAbi.IrqSet.START, 0)
                    .putInt(VfioAbi.IrqSet.COUNT, count);
            ioctl(VfioIoctls.VFIO_DEVICE_SET_IRQS, set.address());
        }
    }

    /** mmap the whole of region {@code index}; the region must allow mmap and must not be sparse. */
    public VfioRegionMapping map(int index) {
        VfioRegionInfo region = regionInfo(index);
        if (region.size() == 0) {
            throw new VfioException(VfioException.Reason.UNSUPPORTED, "region " + index + " of " + name
                    + " is not implemented (size 0)");
        }
        return map(index, 0, region.size());
    }

    /**
     * mmap {@code length} bytes of region {@code index} from {@code offset}. The region must carry
     * {@code VFIO_REGION_INFO_FLAG_MMAP}, the range must lie inside it (and inside one sparse-mmap area when the
     * kernel lists them), and both ends must be page-aligned.
     */
    public VfioRegionMapping map(int index, long offset, long length) {
        VfioRegionInfo region = regionInfo(index);
        if (!region.mappable()) {
            throw new VfioException(VfioException.Reason.UNSUPPORTED, "region " + index + " of " + name
                    + " does not allow mmap (flags 0x" + Integer.toHexString(region.flags()) + "); use read/write");
        }
        AddressRange wanted = rangeInside(region, offset, length);
        long page = posix.pageSize();
        if (!wanted.isAligned(page)) {
            throw new IllegalArgumentException("mmap of region " + index + " of " + name + " at offset " + offset
                    + " length " + length + " is not aligned to the " + page + "-byte page");
        }
        if (region.sparseMmap().isPresent()
                && region.sparseMmap().get().stream().noneMatch(area -> area.contains(wanted))) {
            throw new VfioException(VfioException.Reason.UNSUPPORTED, "region " + index + " of " + name
                    + " may be mmap'ed only in " + region.sparseMmap().get() + "; " + wanted + " is not inside one");
        }
        int prot = (region.readable() ? Mman.PROT_READ : 0) | (region.writable() ? Mman.PROT_WRITE : 0);
        long address;
        try {
            address = posix.mmap(0, length, prot, Mman.MAP_SHARED, fd, region.offset() + offset);
        } catch (NativeException e) {
            throw new VfioException(VfioException.Reason.NATIVE, "cannot mmap region " + index + " of " + name
                    + ": " + e.getMessage(), e);
        }
        VfioRegionMapping mapping = new VfioRegionMapping(posix, index, address, length);
        mappings.add(mapping);
        return mapping;
    }

    private VfioRegionInfo access(int index, long offset, int length, boolean write) {
        ensureOpen();
        VfioRegionInfo region = regionInfo(index);
        if (write ? !region.writable() : !region.readable()) {
            throw new VfioException(VfioException.Reason.UNSUPPORTED, "region " + index + " of " + name
                    + " is not " + (write ? "writable" : "readable"));
        }
        if (length > 0) {
            rangeInside(region, offset, length);
        }
        return region;
    }

    private AddressRange rangeInside(VfioRegionInfo region, long offset, long length) {
        if (offset < 0 || length <= 0 || region.size() == 0 || offset > region.size() - length) {
            throw new IllegalArgumentException("access of " + length + " bytes at offset " + offset
                    + " is outside region " + region.index() + " of " + name + " (" + region.size() + " bytes)");
        }
        return AddressRange.of(offset, length);
    }

    private static void checkWidth(int width) {
        if (width != 1 && width != 2 && width != 4 && width != 8) {
            throw new IllegalArgumentException("register width must be 1, 2, 4 or 8 bytes, was " + width);
        }
    }

    private void transfer(boolean write, VfioRegionInfo region, long offset, NativeBuffer buf, int length) {
        if (length == 0) {
            return;
        }
        long done;
        try {
            done = write ? posix.pwrite(fd, buf.address(), length, region.offset() + offset)
                    : posix.pread(fd, buf.address(), length, region.offset() + offset);
        } catch (NativeException e) {
            throw new VfioException(VfioException.Reason.NATIVE, (write ? "writing " : "reading ") + length
                    + " bytes at offset " + offset + " of region " + region.index() + " of " + name + ": "
                    + e.getMessage(), e);
        }
        if (done != length) {
            throw new VfioException(VfioException.Reason.NATIVE, (write ? "wrote " : "read ") + done + " of "
                    + length + " bytes at offset " + offset + " of region " + region.index() + " of " + name);
        }
    }

    private void requirePci(String what) {
        if (!info().pci()) {
            throw new VfioException(VfioException.Reason.UNSUPPORTED, "device " + name + " is not a vfio-pci device;"
                    + " it has no PCI " + what);
        }
    }

    private void ioctl(io.actovisor.memory.sys.Ioctl request, long arg) {
        try {
            posix.ioctl(fd, request, arg);
        } catch (NativeException e) {
            throw new VfioException(VfioException.Reason.NATIVE, "device " + name + ": " + e.getMessage(), e);
        }
    }

    private void ensureOpen() {
        if (closed) {
            throw new IllegalStateException("VFIO device " + name + " is closed");
        }
    }

    /** Disable its interrupts, unmap the regions mapped through this device, close the fd. Idempotent. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        for (VfioInterrupts enabled : new ArrayList<>(interrupts)) {
            enabled.close();
        }
        closed = true;
        for (VfioRegionMapping mapping : mappings) {
            mapping.close();
        }
        mappings.clear();
        group.forget(this);
        try {
            posix.close(fd);
        } catch (NativeException e) {
            LOG.warn("closing VFIO device {} (fd {}) failed: {}", name, fd, e.getMessage());
        }
    }
}
