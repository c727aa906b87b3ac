package io.actovisor.devices.iommu;

/** A device access the IOMMU did not allow: no mapping covers {@link #iova()}, or the mapping forbids it. */
public final class DmaFault extends RuntimeException {
    private static final long serialVersionUID = 1L;

    private final long iova;

    public DmaFault(long iova, String message) {
        super(message);
        this.iova = iova;
    }

    public DmaFault(long iova, String message, Throwable cause) {
        super(message, cause);
        this.iova = iova;
    }

    /** The first IOVA of the access that faulted. */
    public long iova() {
        return iova;
    }
}
