package io.actovisor.config;

import io.actovisor.memory.AddressRange;
import io.actovisor.memory.RegionKind;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Objects;
import java.util.Optional;

/**
 * A validated VM definition: what {@code actovisor.vm} in HOCON describes, as immutable records. Produced by
 * {@link VmSpecParser}, rendered back to HOCON by {@link VmSpecRenderer}; the VMM builds the VM from it.
 */
public record VmSpec(String name, int vcpus, List<Region> memory, Firmware firmware, Guest guest,
        List<Container> containers, Balloon balloon, Devices devices, Api api) {

    public VmSpec {
        Objects.requireNonNull(name, "name");
        memory = List.copyOf(memory);
        containers = List.copyOf(containers);
    }

    /** How a RAM or ROM region's host memory is allocated. */
    public enum Backing {
        /** Anonymous private memory: discards are MADV_DONTNEED. */
        ANONYMOUS,
        /** A memfd, shareable: discards punch holes. */
        MEMFD
    }

    /**
     * One region of guest-physical memory.
     *
     * @param backing for RAM and ROM
     * @param device  for MMIO: the device that answers
     */
    public record Region(String name, RegionKind kind, AddressRange range, Optional<Backing> backing, boolean readOnly,
            Optional<String> device) {
    }

    /** The guest firmware: the image built into actovisor, or a file. */
    public record Firmware(Optional<Path> file) {
        public static final Firmware BUNDLED = new Firmware(Optional.empty());

        public boolean bundled() {
            return file.isEmpty();
        }
    }

    /**
     * What the guest runs.
     *
     * @param program     the firmware program vCPU 0 runs
     * @param workloadMib how much guest memory the workload writes and checksums in each round
     * @param kind        which guest runs it: the firmware on KVM, the scripted guest, a Linux kernel on KVM, or
     *                    {@code auto}
     * @param kernel      for {@code linux}: a bzImage file, or {@code auto} (the newest /boot/vmlinuz-*)
     * @param initrd      for {@code linux}: an initramfs file, {@code auto} (built on first use) or {@code none}
     * @param cmdline     for {@code linux}: the kernel command line
     */
    public record Guest(String program, int workloadMib, GuestKind kind, String kernel, String initrd,
            String cmdline) {
        /** The keyword that picks the kernel or builds the initramfs. */
        public static final String AUTO = "auto";
        /** The initrd keyword for "no initrd". */
        public static final String NONE = "none";

        /** A guest of {@code kind} with the Linux keys at their defaults. */
        public Guest(String program, int workloadMib, GuestKind kind) {
            this(program, workloadMib, kind, AUTO, AUTO, "");
        }

        /** A guest of kind {@code auto}. */
        public Guest(String program, int workloadMib) {
            this(program, workloadMib, GuestKind.AUTO);
        }
    }

    /** The IOMMU backend of a container. */
    public enum Backend {
        MODEL("model"),
        PINNED("pinned"),
        VFIO_TYPE1("vfio-type1");

        private final String configName;

        Backend(String configName) {
            this.configName = configName;
        }

        public String configName() {
            return configName;
        }
    }

    /**
     * A VFIO container: one IOMMU context and its groups.
     *
     * @param discard          how its pins relate to discards of guest RAM
     * @param discardBlockSize for {@code coordinated}: the size of the blocks guest RAM is mapped in (a power of two)
     */
    public record Container(String name, Backend backend, int maxMappings, List<Group> groups, Discard discard,
            long discardBlockSize) {
        public Container {
            groups = List.copyOf(groups);
        }
    }

    /** How a container's pins relate to discards of guest RAM ({@code discard}). */
    public enum Discard {
        /** No discard while any of its groups is attached (the default). */
        INHIBIT("inhibit"),
        /** Guest RAM mapped in blocks that the container unmaps before they are discarded. */
        COORDINATED("coordinated"),
        /** The device pins on demand (mediated devices) and never disables discards. */
        ON_DEMAND("on-demand");

        private final String configName;

        Discard(String configName) {
            this.configName = configName;
        }

        public String configName() {
            return configName;
        }
    }

    /**
     * A VFIO group.
     *
     * @param id            for {@code vfio-type1}, the number of {@code /dev/vfio/<id>}
     * @param discard       the discard mode the group declares; empty: its container's. A group whose mode differs
     *                      from its container's is refused when it attaches
     * @param attachAtStart attach when the VM starts (otherwise through the API)
     */
    public record Group(String id, Optional<Discard> discard, boolean attachAtStart) {
        public Group {
            java.util.Objects.requireNonNull(discard, "discard");
        }
    }

    /**
     * The balloon.
     *
     * @param initialTargetBytes       the target at start
     * @param statsPollingInterval     how often the device asks the guest for statistics
     * @param unsafeIgnoreInhibitor    discard even while VFIO groups pin guest RAM (reproduces data loss)
     * @param mmioBase                 where the virtio-balloon device's registers are
     * @param freePageReporting        the guest reports free pages (the device always offers the feature)
     */
    public record Balloon(boolean enabled, long initialTargetBytes, boolean deflateOnOom, Duration statsPollingInterval,
            boolean unsafeIgnoreInhibitor, long mmioBase, boolean freePageReporting) {
        /** A balloon whose guest reports free pages. */
        public Balloon(boolean enabled, long initialTargetBytes, boolean deflateOnOom, Duration statsPollingInterval,
                boolean unsafeIgnoreInhibitor, long mmioBase) {
            this(enabled, initialTargetBytes, deflateOnOom, statsPollingInterval, unsafeIgnoreInhibitor, mmioBase,
                    true);
        }
    }

    /**
     * Emulated devices.
     *
     * @param serial whether the 16550 UART at 0x3f8 is present
     * @param dma    the DMA engine, behind a VFIO group, if any
     * @param blk    the virtio-blk RAM disk, if any
     */
    public record Devices(boolean serial, Optional<Dma> dma, Optional<Blk> blk) {
        /** Devices without a virtio-blk. */
        public Devices(boolean serial, Optional<Dma> dma) {
            this(serial, dma, Optional.empty());
        }
    }

    /**
     * The virtio-blk device (docs/devices.md): a zeroed RAM disk of {@code bytes}, its MMIO base, and the container
     * its request buffers go through ({@code container}, as a passthrough device's DMA would), or guest memory
     * directly when empty.
     */
    public record Blk(long bytes, long mmioBase, Optional<String> container) {
    }

    /** The emulated DMA engine: its MMIO base and the group (so the container and IOMMU) it does DMA through. */
    public record Dma(String group, long mmioBase) {
    }

    /** The management API. */
    public record Api(boolean enabled, String host, int port, boolean allowRemote, Optional<String> token) {
    }

    /** Bytes of guest RAM. */
    public long ramBytes() {
        return memory.stream().filter(r -> r.kind() == RegionKind.RAM).mapToLong(r -> r.range().size()).sum();
    }
}
