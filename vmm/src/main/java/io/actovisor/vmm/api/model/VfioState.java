package io.actovisor.vmm.api.model;

import java.util.List;

/**
 * {@code GET /vfio}: containers, groups and the balloon's inhibitor holders.
 *
 * @param containers       every VFIO container with its IOMMU mappings
 * @param groups           every configured group, attached or not
 * @param inhibitorHolders holders that disable the balloon's discards
 */
public record VfioState(List<Container> containers, List<Group> groups, List<String> inhibitorHolders) {
    public VfioState {
        containers = List.copyOf(containers);
        groups = List.copyOf(groups);
        inhibitorHolders = List.copyOf(inhibitorHolders);
    }

    /** One container (one IOMMU context). */
    public record Container(String name, String backend, List<String> groups, List<Mapping> mappings,
            long pinnedBytes) {
        public Container {
            groups = List.copyOf(groups);
            mappings = List.copyOf(mappings);
        }
    }

    /** One IOMMU mapping: IOVA (hex), size in bytes, permissions. */
    public record Mapping(String iova, long size, String permissions) {
    }

    /** One group; {@code container} is null while detached. */
    public record Group(String id, String container, boolean attached, boolean balloonCompatible,
            boolean inhibiting) {
    }
}
