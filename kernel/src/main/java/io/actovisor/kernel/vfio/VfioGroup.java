package io.actovisor.kernel.vfio;

import io.actovisor.memory.sys.Errno;
import io.actovisor.memory.sys.NativeBuffer;
import io.actovisor.memory.sys.NativeException;
import io.actovisor.memory.sys.Posix;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The owner of one {@code /dev/vfio/<group>} file descriptor: one IOMMU group. Opening checks viability
 * ({@code VFIO_GROUP_GET_STATUS}): a group is usable only when every device in it is bound to vfio-pci or to no
 * driver. It joins a container through {@link VfioContainer#attach(VfioGroup)}, and hands out device fds.
 *
 * <p>Single owner, not thread-safe. {@link #close()} is idempotent: it closes the devices it opened, leaves its
 * container, and closes the group fd, in that order (the kernel refuses UNSET_CONTAINER while devices are open).
 */
public final class VfioGroup implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(VfioGroup.class);

    private final Posix posix;
    private final int id;
    private final Path path;
    private final int fd;
    private final List<VfioDevice> devices = new ArrayList<>();
    private VfioContainer container;
    private boolean closed;

    private VfioGroup(Posix posix, int id, Path path, int fd) {
        this.posix = posix;
        this.id = id;
        this.path = path;
        this.fd = fd;
    }

    /** Open {@code /dev/vfio/<id>}. */
    public static VfioGroup open(Posix posix, int id) {
        return open(posix, Vfio.DEFAULT_ROOT, id);
    }

    /**
     * Open {@code <root>/<id>} and check it is viable. Throws {@link VfioException} with the reason (no VFIO,
     * group missing, no permission, busy, not viable); on failure nothing stays open.
     */
    public static VfioGroup open(Posix posix, Path root, int id) {
        if (id < 0) {
            throw new IllegalArgumentException("IOMMU group id must be non-negative, was " + id);
        }
        Path path = root.resolve(Integer.toString(id));
        int fd = Vfio.openVfioFile(posix, root, path, "IOMMU group " + id);
        VfioGroup group = new VfioGroup(posix, id, path, fd);
        try {
            int flags = group.status();
            if ((flags & VfioAbi.GroupStatus.FLAG_VIABLE) == 0) {
                throw new VfioException(VfioException.Reason.GROUP_NOT_VIABLE, "IOMMU group " + id + " is not"
                        + " viable: every device in /sys/kernel/iommu_groups/" + id + "/devices must be bound to"
                        + " vfio-pci or to no driver (see docs/vfio.md)" + boundDrivers(root, id));
            }
            if ((flags & VfioAbi.GroupStatus.FLAG_CONTAINER_SET) != 0) {
                throw new VfioException(VfioException.Reason.GROUP_BUSY, "IOMMU group " + id
                        + " is already attached to a container");
            }
            return group;
        } catch (RuntimeException e) {
            VfioContainer.closeQuietly(posix, fd, e);
            throw e;
        }
    }

    /** On the real /dev/vfio, which driver each device of the group is bound to now; best effort. */
    private static String boundDrivers(Path root, int id) {
        if (!root.equals(Vfio.DEFAULT_ROOT)) {
            return "";
        }
        try {
            return "; now bound: " + String.join(", ", Vfio.groupDrivers(Vfio.DEFAULT_SYSFS, id));
        } catch (VfioException e) {
            return "";
        }
    }

    /** {@code VFIO_GROUP_GET_STATUS}: the flags ({@link VfioAbi.GroupStatus#FLAG_VIABLE}, FLAG_CONTAINER_SET). */
    public int status() {
        ensureOpen();
        try (NativeBuffer status = NativeBuffer.allocate(VfioAbi.GroupStatus.SIZE)) {
            status.putInt(VfioAbi.GroupStatus.ARGSZ, VfioAbi.GroupStatus.SIZE);
            try {
                posix.ioctl(fd, VfioIoctls.VFIO_GROUP_GET_STATUS, status.address());
            } catch (NativeException e) {
                throw new VfioException(VfioException.Reason.NATIVE, "cannot read the status of IOMMU group " + id
                        + ": " + e.getMessage(), e);
            }
            return status.getInt(VfioAbi.GroupStatus.FLAGS);
        }
    }

    public int id() {
        return id;
    }

    public int fd() {
        return fd;
    }

    public Path path() {
        return path;
    }

    /** Whether the group is attached to a container. */
    public boolean attached() {
        return container != null;
    }

    /** {@code VFIO_GROUP_SET_CONTAINER}, passing the container fd by pointer as the kernel expects. */
    void setContainer(VfioContainer target) {
        ensureOpen();
        if (container != null) {
            throw new IllegalStateException("IOMMU group " + id + " is already attached to a container");
        }
        try (NativeBuffer containerFd = NativeBuffer.allocate(Integer.BYTES)) {
            containerFd.putInt(0, target.fd());
            posix.ioctl(fd, VfioIoctls.VFIO_GROUP_SET_CONTAINER, containerFd.address());
        } catch (NativeException e) {
            VfioException.Reason reason = e.errno() == Errno.EBUSY ? VfioException.Reason.GROUP_BUSY
                    : VfioException.Reason.NATIVE;
            throw new VfioException(reason, "cannot attach IOMMU group " + id + " to the container: "
                    + e.getMessage(), e);
        }
        container = target;
    }

    /** Close this group's devices, then {@code VFIO_GROUP_UNSET_CONTAINER}. A no-op when not attached. */
    void unsetContainer() {
        if (container == null) {
            return;
        }
        closeDevices();
        container = null;
        try {
            posix.ioctl(fd, VfioIoctls.VFIO_GROUP_UNSET_CONTAINER, 0);
        } catch (NativeException e) {
            throw new VfioException(VfioException.Reason.NATIVE, "cannot detach IOMMU group " + id
                    + " from its container: " + e.getMessage(), e);
        }
    }

    /**
     * {@code VFIO_GROUP_GET_DEVICE_FD} for {@code name} (a PCI address like {@code 0000:00:04.0}, as listed in
     * {@code /sys/kernel/iommu_groups/<id>/devices}). The group must be attached to a container.
     */
    public VfioDevice openDevice(String name) {
        ensureOpen();
        if (container == null) {
            throw new IllegalStateException("IOMMU group " + id + " must be attached to a container before device "
                    + name + " can be opened");
        }
        if (name.isEmpty() || name.indexOf('\0') >= 0) {
            throw new IllegalArgumentException("VFIO device name must be non-empty without NUL, was '" + name + "'");
        }
        byte[] bytes = name.getBytes(StandardCharsets.UTF_8);
        int deviceFd;
        try (NativeBuffer cName = NativeBuffer.allocate(bytes.length + 1)) {
            cName.putBytes(0, bytes);
            deviceFd = (int) posix.ioctl(fd, VfioIoctls.VFIO_GROUP_GET_DEVICE_FD, cName.address());
        } catch (NativeException e) {
            VfioException.Reason reason = e.errno() == Errno.EBUSY ? VfioException.Reason.GROUP_BUSY
                    : VfioException.Reason.NATIVE;
            throw new VfioException(reason, "cannot open device " + name + " of IOMMU group " + id + ": "
                    + e.getMessage(), e);
        }
        VfioDevice device = new VfioDevice(posix, deviceFd, name, this);
        devices.add(device);
        return device;
    }

    /** Called by a device that closes itself, so the group does not close it again. */
    void forget(VfioDevice device) {
        devices.remove(device);
    }

    /** The devices opened through this group and not yet closed. */
    public List<VfioDevice> devices() {
        return List.copyOf(devices);
    }

    private void closeDevices() {
        for (VfioDevice device : new ArrayList<>(devices)) {
            device.close();
        }
        devices.clear();
    }

    private void ensureOpen() {
        if (closed) {
            throw new IllegalStateException("IOMMU group " + id + " is closed");
        }
    }

    /** Close devices, leave the container, close the group fd. Idempotent. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        try {
            if (container != null) {
                container.detach(this);
            }
        } catch (RuntimeException e) {
            LOG.warn("IOMMU group {}: {}", id, e.getMessage());
        }
        closeDevices();
        closed = true;
        try {
            posix.close(fd);
        } catch (NativeException e) {
            LOG.warn("closing IOMMU group {} (fd {}) failed: {}", id, fd, e.getMessage());
        }
    }
}
