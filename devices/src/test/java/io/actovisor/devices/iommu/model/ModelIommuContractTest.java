package io.actovisor.devices.iommu.model;

import io.actovisor.devices.iommu.Iommu;
import io.actovisor.devices.iommu.IommuContractTest;

/** The type1 contract, held against the model backend. */
class ModelIommuContractTest extends IommuContractTest {
    @Override
    protected Iommu open(int maxMappings) {
        return ModelIommu.create(maxMappings);
    }

    @Override
    protected String expectedBackend() {
        return ModelIommu.BACKEND;
    }
}
