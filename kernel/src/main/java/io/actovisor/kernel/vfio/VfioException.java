package io.actovisor.kernel.vfio;

import io.actovisor.memory.sys.NativeException;
import java.util.Optional;

/**
 * A VFIO container, group or device could not be opened or used. {@link #reason()} says why in a form code can
 * act on; the message is a sentence naming the file, group or ioctl, with the errno when the kernel refused.
 */
public final class VfioException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    /** Why VFIO refused. */
    public enum Reason {
        /** {@code /dev/vfio} does not exist: the vfio modules are not loaded or the host has no IOMMU. */
        NO_VFIO,
        /** A VFIO file exists but this process may not open it (file mode, or group owned by another user). */
        NO_PERMISSION,
        /** The container file does not answer like a VFIO container of the expected API version. */
        NOT_A_CONTAINER,
        /** The container supports neither VFIO_TYPE1v2_IOMMU nor VFIO_TYPE1_IOMMU. */
        NO_TYPE1,
        /** {@code /dev/vfio/<group>} does not exist: no device of that IOMMU group is bound to vfio-pci. */
        GROUP_MISSING,
        /** Some device of the group is bound to a host driver other than vfio-pci. */
        GROUP_NOT_VIABLE,
        /** The group is already open in another process, or already attached to another container. */
        GROUP_BUSY,
        /** The device, region or operation is not offered by this device (no reset, region not mmap-able). */
        UNSUPPORTED,
        /** The kernel refused for another reason; the cause names the ioctl and errno. */
        NATIVE
    }

    private final Reason reason;

    public VfioException(Reason reason, String message) {
        super(message);
        this.reason = reason;
    }

    public VfioException(Reason reason, String message, Throwable cause) {
        super(message, cause);
        this.reason = reason;
    }

    public Reason reason() {
        return reason;
    }

    /** The kernel's errno, when a system call is the cause. */
    public Optional<Integer> errno() {
        return getCause() instanceof NativeException n ? Optional.of(n.errno()) : Optional.empty();
    }
}
