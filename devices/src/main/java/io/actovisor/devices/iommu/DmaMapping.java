package io.actovisor.devices.iommu;

import io.actovisor.memory.AddressRange;
import io.actovisor.memory.HostAddress;

/** One IOMMU mapping: device addresses {@code iova} reach host memory from {@code host}. */
public record DmaMapping(AddressRange iova, HostAddress host, DmaPermissions permissions) {
}
