package io.actovisor.vmm.runtime;

import io.actovisor.actors.balloon.BalloonSettings;
import io.actovisor.actors.balloon.VirtioBalloonActor;
import io.actovisor.actors.blk.VirtioBlkActor;
import io.actovisor.actors.discard.DiscardMode;
import io.actovisor.actors.dma.DmaEngineActor;
import io.actovisor.devices.boot.GuestFirmware;
import io.actovisor.actors.vfio.IommuBackend;
import io.actovisor.actors.vm.VmTopology;
import io.actovisor.config.GuestKind;
import io.actovisor.config.VmSpec;
import io.actovisor.devices.guest.scripted.GuestLayout;
import io.actovisor.devices.guest.scripted.WorkloadProgram;
import java.time.Duration;
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
    private static final org.slf4j.Logger LOG = org.slf4j.LoggerFactory.getLogger(VmBuilder.class);

    private VmBuilder() {
    }

    /** The topology of {@code spec}; the caller (the VM actor) owns the memory from here on. */
    public static VmTopology topology(VmSpec spec, BalloonSettings balloonDefaults) {
        return topology(spec, balloonDefaults, 1000);
    }

    /** As {@link #topology(VmSpec, BalloonSettings)}, with the workload sleeping {@code roundMillis} per round. */
    public static VmTopology topology(VmSpec spec, BalloonSettings balloonDefaults, long roundMillis) {
        return topology(spec, balloonDefaults, roundMillis, GuestChoice.kvmUnavailability());
    }

    /**
     * As {@link #topology(VmSpec, BalloonSettings, long)} on a host where KVM is unavailable for
     * {@code kvmUnavailable} (empty: KVM works): {@code guest.kind} picks the firmware, the scripted or the Linux
     * guest, and the choice is logged in one line.
     *
     * @throws GuestChoice.GuestUnavailableException if the definition asks for a guest this host cannot run
     */
    public static VmTopology topology(VmSpec spec, BalloonSettings balloonDefaults, long roundMillis,
            Optional<String> kvmUnavailable) {
        GuestChoice choice = GuestChoice.choose(spec.guest().kind(), kvmUnavailable);
        if (choice.kind() == GuestKind.SCRIPTED && !spec.guest().program().equals("workload")) {
            throw new GuestChoice.GuestUnavailableException("the scripted guest runs only the program 'workload', "
                    + "not guest.program = " + spec.guest().program() + " (a firmware program, which needs KVM)");
        }
        LOG.debug("VM {}: {}", spec.name(), choice.announcement()); // run prints it on the console
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
                containers.add(new VmTopology.Container(c.name(), backend(c), discardMode(c.discard()),
                        c.discardBlockSize()));
                for (VmSpec.Group g : c.groups()) {
                    groups.add(new VmTopology.Group(g.id(), c.name(), g.discard().map(VmBuilder::discardMode),
                            g.attachAtStart()));
                }
            }
            Optional<BalloonSettings> balloon = spec.balloon().enabled()
                    ? Optional.of(balloonDefaults.withUnsafeIgnoreInhibitor(spec.balloon().unsafeIgnoreInhibitor()))
                    : Optional.empty();
            Map<String, io.actovisor.kernel.kvm.DeferredIrqLine> lines = choice.kind() == GuestKind.LINUX
                    ? LinuxGuestBuilder.interruptLines(spec) : Map.of();
            Optional<VmTopology.Guest> guest = Optional.empty();
            Optional<VmTopology.ScriptedGuest> scripted = Optional.empty();
            if (choice.kind() == GuestKind.LINUX) {
                guest = Optional.of(LinuxGuestBuilder.guest(spec, lines));
            } else if (choice.kind() == GuestKind.FIRMWARE) {
                byte[] firmware = spec.firmware().file().map(GuestFirmware::load).orElseGet(GuestFirmware::bundled);
                long dmaBase = spec.devices().dma().map(VmSpec.Dma::mmioBase).orElse(0L);
                long balloonBase = spec.balloon().enabled() ? spec.balloon().mmioBase() : 0;
                guest = Optional.of(new VmTopology.Guest(firmware, spec.guest().program(),
                        (long) spec.guest().workloadMib() << 20, new long[] {roundMillis, dmaBase, balloonBase,
                        spec.balloon().freePageReporting() ? 1 : 0},
                        spec.vcpus(), spec.devices().serial()));
            } else {
                Duration interval = Duration.ofMillis(roundMillis);
                scripted = Optional.of(new VmTopology.ScriptedGuest(() -> new WorkloadProgram(interval,
                        spec.balloon().freePageReporting()),
                        GuestLayout.of((long) spec.guest().workloadMib() << 20)));
            }
            List<VmTopology.Device> devices = new ArrayList<>();
            if (spec.balloon().enabled()) {
                Optional<io.actovisor.kernel.kvm.IrqLine> irq = Optional.ofNullable(lines.get("balloon"));
                devices.add(new VmTopology.Device("balloon", components -> VirtioBalloonActor.create(components.guestMemory(),
                        components.balloon().orElseThrow(), Optional.of(components.discardManager()),
                        spec.balloon().deflateOnOom(), spec.balloon().statsPollingInterval(), irq),
                        VmTopology.Device.Role.VIRTIO_BALLOON));
            }
            spec.devices().dma().ifPresent(dma -> {
                String container = groupContainers(spec).get(dma.group());
                devices.add(new VmTopology.Device("dma", components -> DmaEngineActor.create(
                        components.containers().get(container))));
            });
            spec.devices().blk().ifPresent(blk -> {
                Optional<io.actovisor.kernel.kvm.IrqLine> irq = Optional.ofNullable(lines.get("blk"));
                devices.add(new VmTopology.Device("blk", components -> VirtioBlkActor.create(spec.name() + "-blk",
                        components.guestMemory(), blk.bytes(), blk.container().map(c -> components.containers().get(c)),
                        irq)));
            });
            return new VmTopology(spec.name(), memory, regions, balloon, containers, groups, guest, devices,
                    scripted);
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

    private static DiscardMode discardMode(VmSpec.Discard discard) {
        return switch (discard) {
            case INHIBIT -> DiscardMode.INHIBIT;
            case COORDINATED -> DiscardMode.COORDINATED;
            case ON_DEMAND -> DiscardMode.ON_DEMAND;
        };
    }
}
