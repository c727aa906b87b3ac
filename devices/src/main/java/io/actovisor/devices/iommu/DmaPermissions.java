package io.actovisor.devices.iommu;

/** What a device may do through a mapping: RAM maps read-write, ROM read-only. */
public enum DmaPermissions {
    READ,
    WRITE,
    READ_WRITE;

    public boolean canRead() {
        return this != WRITE;
    }

    public boolean canWrite() {
        return this != READ;
    }
}
