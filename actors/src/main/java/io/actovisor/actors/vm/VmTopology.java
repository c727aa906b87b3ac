package io.actovisor.actors.vm;

import io.actovisor.actors.balloon.BalloonSettings;
import io.actovisor.actors.vfio.IommuBackend;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.MemoryRegion;
import java.util.List;
import java.util.Objects;
import java.util.Optional;

/**
 * Everything a {@link VmActor} builds, already resolved: regions with their host memory, IOMMU backends chosen.
 * The VMM turns a validated {@code VmSpec} into one; Java users may build one by hand.
 *
 * @param memory     the host memory blocks the VM owns: the VM closes them when it stops, after every actor that
 *                   used them has stopped
 * @param regions    the guest-physical memory map, committed as one commit at start
 * @param balloon    the balloon's settings, if the VM has one
 * @param containers VFIO containers, each with the backend that opens its IOMMU
 * @param groups     VFIO groups; those with {@code attachAtStart} are attached before the VM reports it started
 */
public record VmTopology(String name, List<HostMemory> memory, List<MemoryRegion> regions,
        Optional<BalloonSettings> balloon, List<Container> containers, List<Group> groups) {

    public VmTopology {
        Objects.requireNonNull(name, "name");
        memory = List.copyOf(memory);
        regions = List.copyOf(regions);
        Objects.requireNonNull(balloon, "balloon");
        containers = List.copyOf(containers);
        groups = List.copyOf(groups);
        for (Group g : groups) {
            if (containers.stream().noneMatch(c -> c.name().equals(g.container()))) {
                throw new IllegalArgumentException("group " + g.id() + " names container '" + g.container()
                        + "', which the VM does not have");
            }
        }
    }

    /** A VFIO container and the backend of its IOMMU. */
    public record Container(String name, IommuBackend backend) {
    }

    /** A VFIO group, the container it belongs to, and whether it pins on demand (balloon-compatible). */
    public record Group(String id, String container, boolean balloonCompatible, boolean attachAtStart) {
    }

    /** Bytes of guest RAM (RAM regions only). */
    public long ramBytes() {
        return regions.stream().filter(r -> r.kind() == io.actovisor.memory.RegionKind.RAM)
                .mapToLong(r -> r.range().size()).sum();
    }
}
