package io.actovisor.devices.iommu.pinned;

import io.actovisor.devices.iommu.Iommu;
import io.actovisor.devices.iommu.IommuContractTest;
import io.actovisor.kernel.uring.IoUring;
import io.actovisor.memory.testing.NativeRequirement;
import org.junit.jupiter.api.BeforeAll;

/** The type1 contract, held against real io_uring pins. */
class PinnedIommuContractTest extends IommuContractTest {
    @BeforeAll
    static void requireIoUring() {
        NativeRequirement.require("io_uring", IoUring.unavailabilityCause());
    }

    @Override
    protected Iommu open(int maxMappings) {
        return PinnedIommu.open(maxMappings);
    }

    @Override
    protected String expectedBackend() {
        return PinnedIommu.BACKEND;
    }
}
