package io.actovisor.kernel.vfio;

import io.actovisor.memory.sys.Ioctl;

/**
 * Every VFIO ioctl request actovisor issues. VFIO encodes them all as {@code _IO(';', 100 + n)} and carries the
 * structure size in {@code argsz} instead; {@code VfioAbiTest} compares each number with the C headers.
 */
public final class VfioIoctls {
    public static final Ioctl VFIO_GET_API_VERSION = vfio("VFIO_GET_API_VERSION", 0);
    public static final Ioctl VFIO_CHECK_EXTENSION = vfio("VFIO_CHECK_EXTENSION", 1);
    public static final Ioctl VFIO_SET_IOMMU = vfio("VFIO_SET_IOMMU", 2);
    public static final Ioctl VFIO_GROUP_GET_STATUS = vfio("VFIO_GROUP_GET_STATUS", 3);
    public static final Ioctl VFIO_GROUP_SET_CONTAINER = vfio("VFIO_GROUP_SET_CONTAINER", 4);
    public static final Ioctl VFIO_GROUP_UNSET_CONTAINER = vfio("VFIO_GROUP_UNSET_CONTAINER", 5);
    public static final Ioctl VFIO_GROUP_GET_DEVICE_FD = vfio("VFIO_GROUP_GET_DEVICE_FD", 6);
    public static final Ioctl VFIO_DEVICE_GET_INFO = vfio("VFIO_DEVICE_GET_INFO", 7);
    public static final Ioctl VFIO_DEVICE_GET_REGION_INFO = vfio("VFIO_DEVICE_GET_REGION_INFO", 8);
    public static final Ioctl VFIO_DEVICE_GET_IRQ_INFO = vfio("VFIO_DEVICE_GET_IRQ_INFO", 9);
    public static final Ioctl VFIO_DEVICE_SET_IRQS = vfio("VFIO_DEVICE_SET_IRQS", 10);
    public static final Ioctl VFIO_DEVICE_RESET = vfio("VFIO_DEVICE_RESET", 11);
    public static final Ioctl VFIO_IOMMU_GET_INFO = vfio("VFIO_IOMMU_GET_INFO", 12);
    public static final Ioctl VFIO_IOMMU_MAP_DMA = vfio("VFIO_IOMMU_MAP_DMA", 13);
    public static final Ioctl VFIO_IOMMU_UNMAP_DMA = vfio("VFIO_IOMMU_UNMAP_DMA", 14);

    private VfioIoctls() {
    }

    private static Ioctl vfio(String name, int n) {
        return Ioctl.io(name, VfioAbi.Api.VFIO_TYPE, VfioAbi.Api.VFIO_BASE + n);
    }
}
