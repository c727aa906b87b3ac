package io.actovisor.kernel.vfio;

/**
 * What {@code VFIO_DEVICE_GET_INFO} reported.
 *
 * @param flags      {@link VfioAbi.DeviceInfo#FLAG_RESET}, {@code FLAG_PCI}, ...
 * @param numRegions the highest region index + 1
 * @param numIrqs    the highest IRQ index + 1
 */
public record VfioDeviceInfo(int flags, int numRegions, int numIrqs) {
    /** Whether {@code VFIO_DEVICE_RESET} is supported. */
    public boolean resettable() {
        return (flags & VfioAbi.DeviceInfo.FLAG_RESET) != 0;
    }

    /** Whether this is a vfio-pci device (fixed BAR, ROM, config and VGA region indexes). */
    public boolean pci() {
        return (flags & VfioAbi.DeviceInfo.FLAG_PCI) != 0;
    }
}
