package io.actovisor.actors.vm;

import io.actovisor.actors.balloon.BalloonSettings;
import io.actovisor.actors.discard.DiscardMode;
import io.actovisor.actors.vfio.VfioContainerActor;
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
        Optional<BalloonSettings> balloon, List<Container> containers, List<Group> groups, Optional<Guest> guest,
        List<Device> devices, Optional<ScriptedGuest> scripted) {

    public VmTopology {
        Objects.requireNonNull(name, "name");
        memory = List.copyOf(memory);
        regions = List.copyOf(regions);
        Objects.requireNonNull(balloon, "balloon");
        containers = List.copyOf(containers);
        groups = List.copyOf(groups);
        Objects.requireNonNull(guest, "guest");
        devices = List.copyOf(devices);
        Objects.requireNonNull(scripted, "scripted");
        if (guest.isPresent() && scripted.isPresent()) {
            throw new IllegalArgumentException("VM " + name + " has both a firmware guest and a scripted guest");
        }
        for (Group g : groups) {
            if (containers.stream().noneMatch(c -> c.name().equals(g.container()))) {
                throw new IllegalArgumentException("group " + g.id() + " names container '" + g.container()
                        + "', which the VM does not have");
            }
        }
    }

    /**
     * A VFIO container, the backend of its IOMMU, its discard mode and, for {@code coordinated}, the size of the
     * blocks it maps guest RAM in.
     */
    public record Container(String name, IommuBackend backend, DiscardMode discard, long discardBlockSize) {
        /** An {@code inhibit} container (the default). */
        public Container(String name, IommuBackend backend) {
            this(name, backend, DiscardMode.INHIBIT, VfioContainerActor.DEFAULT_DISCARD_BLOCK_SIZE);
        }
    }

    /**
     * A VFIO group, the container it belongs to, the discard mode it declares (empty: its container's; a different
     * one is refused at attach) and whether it attaches at start.
     */
    public record Group(String id, String container, Optional<DiscardMode> discard, boolean attachAtStart) {
        /** A group declaring {@code on-demand} when {@code pinsOnDemand}, otherwise its container's mode. */
        public Group(String id, String container, boolean pinsOnDemand, boolean attachAtStart) {
            this(id, container, pinsOnDemand ? Optional.of(DiscardMode.ON_DEMAND) : Optional.empty(), attachAtStart);
        }
    }

    /** A topology without a scripted guest (a firmware guest on KVM, or no guest). */
    public VmTopology(String name, List<HostMemory> memory, List<MemoryRegion> regions,
            Optional<BalloonSettings> balloon, List<Container> containers, List<Group> groups, Optional<Guest> guest,
            List<Device> devices) {
        this(name, memory, regions, balloon, containers, groups, guest, devices, Optional.empty());
    }

    /**
     * A scripted guest: a Java program driving the VM's devices from the driver side, no KVM
     * ({@link io.actovisor.actors.guest.ScriptedGuestActor}). A new program is made for each VM start.
     *
     * @param layout where the guest keeps its queues and its work area in guest RAM
     */
    public record ScriptedGuest(java.util.function.Supplier<io.actovisor.devices.guest.scripted.GuestProgram> program,
            io.actovisor.devices.guest.scripted.GuestLayout layout) {
        public ScriptedGuest {
            Objects.requireNonNull(program, "program");
            Objects.requireNonNull(layout, "layout");
        }
    }

    /** A topology without a guest on KVM: memory, VFIO and balloon only (tests of the host side). */
    public VmTopology(String name, List<HostMemory> memory, List<MemoryRegion> regions,
            Optional<BalloonSettings> balloon, List<Container> containers, List<Group> groups) {
        this(name, memory, regions, balloon, containers, groups, Optional.empty(), List.of(), Optional.empty());
    }

    /**
     * A guest on KVM: the firmware image (booted as {@code io.actovisor.devices.boot.BootLayout} describes), the
     * program it runs with its work area and arguments, the number of vCPUs (vCPU 0 runs the firmware; the others
     * are created and stay parked, as the bundled firmware is single-processor), and whether COM1 is present.
     */
    public record Guest(byte[] firmware, String program, long workBytes, long[] args, int vcpus, boolean serial,
            Optional<io.actovisor.actors.linux.LinuxGuest> linux) {
        public Guest {
            firmware = firmware.clone();
            args = args.clone();
            if (vcpus < 1) {
                throw new IllegalArgumentException("a guest needs at least one vCPU, got " + vcpus);
            }
            Objects.requireNonNull(linux, "linux");
        }

        /** A firmware guest. */
        public Guest(byte[] firmware, String program, long workBytes, long[] args, int vcpus, boolean serial) {
            this(firmware, program, workBytes, args, vcpus, serial, Optional.empty());
        }

        /**
         * A Linux guest ({@code io.actovisor.devices.boot.linux.LinuxBoot}): every vCPU runs, the in-kernel
         * interrupt controllers and PIT exist, COM1 interrupts on IRQ 4 and takes input, an i8042 resets.
         */
        public static Guest linux(io.actovisor.actors.linux.LinuxGuest linux, int vcpus) {
            return new Guest(new byte[0], "linux", 0, new long[0], vcpus, true, Optional.of(linux));
        }
    }

    /**
     * A device actor the VM spawns once its other actors exist (a DMA engine needs its container); MMIO regions
     * whose {@code device} is {@code name} route to it.
     */
    public record Device(String name, java.util.function.Function<VmActor.Components,
            org.apache.pekko.actor.typed.Behavior<io.actovisor.actors.device.DeviceIo.Command>> factory, Role role) {
        /** What management may look a device up as ({@link VmActor.GetBalloonDevice}); most devices are OTHER. */
        public enum Role {
            VIRTIO_BALLOON,
            OTHER
        }

        public Device {
            Objects.requireNonNull(role, "role");
        }

        /** A device management does not look up by role. */
        public Device(String name, java.util.function.Function<VmActor.Components,
                org.apache.pekko.actor.typed.Behavior<io.actovisor.actors.device.DeviceIo.Command>> factory) {
            this(name, factory, Role.OTHER);
        }
    }

    /** Bytes of guest RAM (RAM regions only). */
    public long ramBytes() {
        return regions.stream().filter(r -> r.kind() == io.actovisor.memory.RegionKind.RAM)
                .mapToLong(r -> r.range().size()).sum();
    }
}
