package io.actovisor.devices.iommu;

/**
 * Device DMA through one IOMMU context: what a passthrough device's memory reads and writes do. Addresses are IOVAs
 * (for a VM, guest-physical addresses); the port resolves them through the context's mappings only, so a device
 * reaches the page the mapping pinned, never "whatever the CPU sees at that address now".
 *
 * <p>An access to an IOVA that no mapping covers, or a write to a read-only mapping, fails with {@link DmaFault}
 * naming the IOVA, as an IOMMU fault would. Single-owner like {@link Iommu}: one actor or device calls it at a time.
 */
public interface DmaPort {
    /** Read {@code length} bytes starting at {@code iova}; the range may span several mappings. */
    byte[] read(long iova, int length);

    /** Write {@code data} starting at {@code iova}; the range may span several mappings. */
    void write(long iova, byte[] data);
}
