package io.actovisor.kernel.vfio;

/**
 * What {@code VFIO_DEVICE_GET_IRQ_INFO} reported for one interrupt index (INTx, MSI, MSI-X, ...).
 *
 * @param index the IRQ index ({@link VfioAbi.Pci#INTX_IRQ_INDEX} ...)
 * @param flags {@link VfioAbi.IrqInfo#FLAG_EVENTFD}, {@code FLAG_MASKABLE}, {@code FLAG_AUTOMASKED}, ...
 * @param count how many vectors the index has (0: not supported by this device)
 */
public record VfioIrqInfo(int index, int flags, int count) {
    /** Whether the index can signal an eventfd. */
    public boolean eventfd() {
        return (flags & VfioAbi.IrqInfo.FLAG_EVENTFD) != 0;
    }

    /** Whether the kernel masks the line after each interrupt (INTx) until it is unmasked. */
    public boolean automasked() {
        return (flags & VfioAbi.IrqInfo.FLAG_AUTOMASKED) != 0;
    }
}
