package io.actovisor.testkit;

import io.actovisor.actors.balloon.BalloonSettings;
import io.actovisor.actors.balloon.VirtioBalloonActor;
import io.actovisor.actors.dma.DmaEngineActor;
import io.actovisor.actors.discard.DiscardMode;
import io.actovisor.actors.vfio.IommuBackend;
import io.actovisor.actors.vfio.VfioContainerActor;
import io.actovisor.actors.vm.VmTopology;
import io.actovisor.devices.guest.scripted.GuestLayout;
import io.actovisor.devices.guest.scripted.GuestProgram;
import io.actovisor.devices.guest.scripted.WorkloadProgram;
import io.actovisor.devices.iommu.pinned.PinnedIommu;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.GuestAddress;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.MemoryRegion;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.function.Supplier;

/**
 * A VM topology with a scripted guest, in a few lines: RAM from guest address 0, a virtio-balloon at
 * {@link #BALLOON_BASE}, a VFIO container {@code c0} with group {@code g0}, the DMA engine at {@link #DMA_BASE}
 * behind it if asked, and the program the guest runs (the workload by default). {@link #build} allocates the host
 * memory, which the VM owns from then on.
 */
public final class ScriptedVm {
    /** The balloon's MMIO window, as in the default VM. */
    public static final long BALLOON_BASE = 0xd0001000L;
    /** The DMA engine's MMIO window, as in the default VM. */
    public static final long DMA_BASE = 0xd0000000L;

    private final String name;
    private long ramBytes = 4L << 20;
    private long workBytes = 1L << 20;
    private boolean balloon = true;
    private boolean dma;
    private boolean deflateOnOom = true;
    private boolean groupInhibits;
    private Duration statsInterval = Duration.ofMillis(200);
    private BalloonSettings balloonSettings = BalloonSettings.DEFAULT;
    private IommuBackend backend = IommuBackend.model(65535);
    private Supplier<GuestProgram> program = () -> new WorkloadProgram(Duration.ofMillis(50));

    private ScriptedVm(String name) {
        this.name = name;
    }

    /** A VM called {@code name} (lower-case letters, digits and dashes: it names actors). */
    public static ScriptedVm named(String name) {
        if (!name.matches("[a-z0-9][a-z0-9-]*")) {
            throw new IllegalArgumentException("VM name '" + name + "' must be lower-case letters, digits and dashes");
        }
        return new ScriptedVm(name);
    }

    /** Bytes of RAM from guest address 0 (default 4 MiB). */
    public ScriptedVm ram(long bytes) {
        this.ramBytes = bytes;
        return this;
    }

    /** Bytes of the workload's work area from 1 MiB (default 1 MiB). */
    public ScriptedVm workArea(long bytes) {
        this.workBytes = bytes;
        return this;
    }

    /** Without a balloon. */
    public ScriptedVm withoutBalloon() {
        this.balloon = false;
        return this;
    }

    /** The balloon's settings (e.g. {@code unsafe-ignore-inhibitor}) and whether it offers DEFLATE_ON_OOM. */
    public ScriptedVm balloon(BalloonSettings settings, boolean deflateOnOom) {
        this.balloonSettings = settings;
        this.deflateOnOom = deflateOnOom;
        return this;
    }

    /** The DMA engine behind group {@code g0}, on the {@code pinned} backend (real io_uring pins). */
    public ScriptedVm withPinnedDma() {
        this.dma = true;
        this.backend = IommuBackend.shared(PinnedIommu.BACKEND, () -> PinnedIommu.open(65535));
        return this;
    }

    /** Container {@code c0}'s backend (default: the model IOMMU). */
    public ScriptedVm backend(IommuBackend backend) {
        this.backend = backend;
        return this;
    }

    /** Group {@code g0} pins like a passthrough device and so inhibits the balloon (default: balloon-compatible). */
    public ScriptedVm inhibitingGroup() {
        this.groupInhibits = true;
        return this;
    }

    /** The program the guest runs; a new one per VM start. */
    public ScriptedVm program(Supplier<GuestProgram> program) {
        this.program = program;
        return this;
    }

    /** Allocate the RAM and build the topology; the VM built from it owns the memory. */
    public VmTopology build() {
        HostMemory ram = HostMemory.anonymous(name + "-ram", ramBytes);
        try {
            List<MemoryRegion> regions = new ArrayList<>(List.of(MemoryRegion.ram("ram", GuestAddress.ZERO, ram)));
            List<VmTopology.Device> devices = new ArrayList<>();
            if (balloon) {
                regions.add(MemoryRegion.mmio("balloon-mmio", AddressRange.of(BALLOON_BASE, 4096), "balloon"));
            }
            if (dma) {
                regions.add(MemoryRegion.mmio("dma-mmio", AddressRange.of(DMA_BASE, 4096), "dma"));
            }
            if (balloon) {
                boolean oom = deflateOnOom;
                Duration interval = statsInterval;
                devices.add(new VmTopology.Device("balloon", c -> VirtioBalloonActor.create(c.guestMemory(),
                        c.balloon().orElseThrow(), oom, interval)));
            }
            if (dma) {
                devices.add(new VmTopology.Device("dma", c -> DmaEngineActor.create(c.containers().get("c0"))));
            }
            return new VmTopology(name, List.of(ram), regions,
                    balloon ? Optional.of(balloonSettings) : Optional.empty(),
                    // A group shares its container's discard mode: on-demand (balloon-compatible) or inhibit.
                    List.of(new VmTopology.Container("c0", backend, groupInhibits ? DiscardMode.INHIBIT
                            : DiscardMode.ON_DEMAND, VfioContainerActor.DEFAULT_DISCARD_BLOCK_SIZE)),
                    List.of(new VmTopology.Group("g0", "c0", Optional.empty(), true)), Optional.empty(), devices,
                    Optional.of(new VmTopology.ScriptedGuest(program, GuestLayout.of(workBytes))));
        } catch (RuntimeException e) {
            ram.close();
            throw e;
        }
    }
}
