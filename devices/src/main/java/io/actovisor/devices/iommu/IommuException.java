package io.actovisor.devices.iommu;

import io.actovisor.memory.AddressRange;
import java.util.Optional;

/** An IOMMU refused an operation; {@link #kind()} says why and the message names the range. */
public final class IommuException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    /** Why an IOMMU operation was refused. */
    public enum Kind {
        /** IOVA, host address or size not aligned to the IOMMU page size (EINVAL). */
        MISALIGNED,
        /** The IOVA range overlaps an existing mapping (EEXIST). */
        OVERLAP,
        /** The context holds as many mappings as it may (ENOSPC). */
        LIMIT,
        /** An unmap would cut an existing mapping in two (EINVAL for type1v2). */
        PARTIAL_UNMAP,
        /** The IOVA lies outside the ranges the IOMMU can map. */
        OUT_OF_RANGE,
        /** Pinning the host pages failed (locked-memory limit, bad address). */
        PIN_FAILED,
        /** The kernel refused for another reason; the cause says which call and errno. */
        NATIVE,
        /** The context is closed. */
        CLOSED
    }

    private final Kind kind;
    private final transient AddressRange range;

    public IommuException(Kind kind, AddressRange range, String message) {
        super(message);
        this.kind = kind;
        this.range = range;
    }

    public IommuException(Kind kind, AddressRange range, String message, Throwable cause) {
        super(message, cause);
        this.kind = kind;
        this.range = range;
    }

    public Kind kind() {
        return kind;
    }

    /** The IOVA range the refused operation named, if any. */
    public Optional<AddressRange> range() {
        return Optional.ofNullable(range);
    }
}
