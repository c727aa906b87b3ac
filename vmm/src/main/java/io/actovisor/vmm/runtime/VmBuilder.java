package io.actovisor.vmm.runtime;

import io.actovisor.actors.balloon.BalloonSettings;
import io.actovisor.actors.balloon.VirtioBalloonActor;
import io.actovisor.actors.dma.DmaEngineActor;
import io.actovisor.memory.FlatView;
import io.actovisor.memory.GuestMemory;
import io.actovisor.devices.kvm.GuestFirmware;
import io.actovisor.actors.vfio.IommuBackend;
import io.actovisor.actors.vm.VmTopology;
import io.actovisor.config.VmSpec;
import io.actovisor.devices.iommu.pinned.PinnedIommu;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.MemoryRegion;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * Turns a validated {@link VmSpec} into a {@link VmTopology}: allocates the host memory of each RAM and ROM region
 * and chooses each container's IOMMU backend. If an allocation fails, what was allocated is released before the
 * error propagates.
 */
public final class VmBuilder {
    private VmBuilder() {
    }

    /** The topology of {@code spec}; the caller (the VM actor) owns the memory from here on. */
    public static VmTopology topology(VmSpec spec, BalloonSettings balloonDefaults) {
        return topology(spec, balloonDefaults, 1000);
    }

    /** As {@link #topology(VmSpec, BalloonSettings)}, with the workload sleeping {@code roundMillis} per round. */
    public static VmTopology topology(VmSpec spec, BalloonSettings balloonDefaults, long roundMillis) {
        List<HostMemory> memory = new ArrayList<>();
        try {
            List<MemoryRegion> regions = new ArrayList<>();
            for (VmSpec.Region r : spec.memory()) {
                switch (r.kind()) {
                    case RAM, ROM -> {
                        HostMemory block = r.backing().orElse(VmSpec.Backing.ANONYMOUS) == VmSpec.Backing.MEMFD
                                ? HostMemory.shared(spec.name() + "-" + r.name(), r.range().size())
                                : HostMemory.anonymous(spec.name() + "-" + r.name(), r.range().size());
                        memory.add(block);
                        MemoryRegion region = r.kind() == io.actovisor.memory.RegionKind.RAM
                                ? MemoryRegion.ram(r.name(), r.range(), block, 0)
                                : MemoryRegion.rom(r.name(), r.range(), block, 0);
                        regions.add(r.readOnly() && r.kind() == io.actovisor.memory.RegionKind.RAM
                                ? new MemoryRegion(region.name(), region.kind(), region.range(), region.priority(),
                                        region.backing(), true, region.device())
                                : region);
                    }
                    case MMIO -> regions.add(MemoryRegion.mmio(r.name(), r.range(), r.device().orElse(r.name())));
                    case RESERVED -> regions.add(MemoryRegion.reserved(r.name(), r.range()));
                    default -> throw new IllegalStateException("unknown region kind " + r.kind());
                }
            }
            List<VmTopology.Container> containers = new ArrayList<>();
            List<VmTopology.Group> groups = new ArrayList<>();
            for (VmSpec.Container c : spec.containers()) {
                containers.add(new VmTopology.Container(c.name(), backend(c)));
                for (VmSpec.Group g : c.groups()) {
                    groups.add(new VmTopology.Group(g.id(), c.name(), g.balloonCompatible(), g.attachAtStart()));
                }
            }
            Optional<BalloonSettings> balloon = spec.balloon().enabled()
                    ? Optional.of(balloonDefaults.withUnsafeIgnoreInhibitor(spec.balloon().unsafeIgnoreInhibitor()))
                    : Optional.empty();
            boolean linux = spec.guest().kind() == io.actovisor.config.GuestKind.LINUX;
            Map<String, io.actovisor.devices.kvm.DeferredIrqLine> lines = linux
                    ? LinuxGuestBuilder.interruptLines(spec) : Map.of();
            byte[] firmware = linux ? new byte[0]
                    : spec.firmware().file().map(GuestFirmware::load).orElseGet(GuestFirmware::bundled);
            long dmaBase = spec.devices().dma().map(VmSpec.Dma::mmioBase).orElse(0L);
            long balloonBase = spec.balloon().enabled() ? spec.balloon().mmioBase() : 0;
            VmTopology.Guest guest = linux ? LinuxGuestBuilder.guest(spec, lines)
                    : new VmTopology.Guest(firmware, spec.guest().program(),
                    (long) spec.guest().workloadMib() << 20, new long[] {roundMillis, dmaBase, balloonBase},
                    spec.vcpus(), spec.devices().serial());
            List<VmTopology.Device> devices = new ArrayList<>();
            if (spec.balloon().enabled()) {
                GuestMemory guestMemory = GuestMemory.of(FlatView.of(regions));
                Optional<io.actovisor.devices.kvm.IrqLine> irq = Optional.ofNullable(lines.get("balloon"));
                devices.add(new VmTopology.Device("balloon", components -> VirtioBalloonActor.create(guestMemory,
                        components.balloon().orElseThrow(), spec.balloon().deflateOnOom(),
                        spec.balloon().statsPollingInterval(), irq)));
            }
            spec.devices().dma().ifPresent(dma -> {
                String container = groupContainers(spec).get(dma.group());
                devices.add(new VmTopology.Device("dma", components -> DmaEngineActor.create(
                        components.containers().get(container))));
            });
            return new VmTopology(spec.name(), memory, regions, balloon, containers, groups, Optional.of(guest),
                    devices);
        } catch (RuntimeException e) {
            memory.forEach(HostMemory::close);
            throw e;
        }
    }

    /** Each configured group's container, for hot attach through the API. */
    public static Map<String, String> groupContainers(VmSpec spec) {
        Map<String, String> out = new LinkedHashMap<>();
        spec.containers().forEach(c -> c.groups().forEach(g -> out.put(g.id(), c.name())));
        return out;
    }

    private static IommuBackend backend(VmSpec.Container c) {
        return switch (c.backend()) {
            case MODEL -> IommuBackend.model(c.maxMappings());
            case PINNED -> IommuBackend.shared(PinnedIommu.BACKEND, () -> PinnedIommu.open(c.maxMappings()));
            case VFIO_TYPE1 -> IommuBackend.vfioType1();
        };
    }
}
