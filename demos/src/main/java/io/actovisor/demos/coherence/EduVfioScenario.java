package io.actovisor.demos.coherence;

import com.typesafe.config.Config;
import io.actovisor.actors.discard.DiscardMode;
import io.actovisor.actors.discard.DiscardManager;
import io.actovisor.actors.balloon.BalloonActor;
import io.actovisor.actors.balloon.BalloonSettings;
import io.actovisor.actors.memory.AddressSpaceActor;
import io.actovisor.actors.vfio.IommuBackend;
import io.actovisor.actors.vfio.ContainerDmaActor;
import io.actovisor.actors.vfio.VfioContainerActor;
import io.actovisor.actors.vfio.VfioGroupActor;
import io.actovisor.devices.iommu.DmaPermissions;
import io.actovisor.devices.iommu.IommuException;
import io.actovisor.kernel.vfio.Vfio;
import io.actovisor.kernel.vfio.VfioAbi;
import io.actovisor.kernel.vfio.VfioDevice;
import io.actovisor.kernel.vfio.VfioDeviceInfo;
import io.actovisor.kernel.vfio.VfioIommuInfo;
import io.actovisor.kernel.vfio.VfioRegionInfo;
import io.actovisor.kernel.vfio.VfioRegionMapping;
import io.actovisor.devices.edu.EduDevice;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.HostAddress;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.sys.ProcessResources;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.OptionalLong;
import java.util.function.Consumer;
import java.util.stream.Stream;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Props;
import org.apache.pekko.actor.typed.javadsl.Behaviors;

/**
 * A balloon discard under a pin on real VFIO type1 pins, with QEMU's {@code edu} device as the DMA master: guest RAM is mapped
 * into a real {@code /dev/vfio/vfio} container through {@link VfioContainerActor}, the device copies a page of it
 * into its buffer and back out to a second page the CPU reads, and the balloon gives the first page up.
 *
 * <p>With the inhibitor the discard is skipped and the device keeps reading what the CPU last wrote. With
 * {@code unsafe-ignore-inhibitor} the discard runs under type1's pin: the CPU faults in a new page and writes to it
 * while the device still reads the old one. On the way it reports what the kernel's type1 driver says of itself,
 * provokes its refusals (overlap, misalignment, the mapping limit) and checks that stopping the actor tree leaves no
 * VFIO file descriptor, pin or mapping behind.
 *
 * <p>Every finding is one {@link Finding}: a named step, whether it holds, and its details, so a harness can read
 * them as JSON lines.
 */
public final class EduVfioScenario {
    /** Guest RAM of the scenario, in 4 KiB pages. */
    static final int RAM_PAGES = 16;
    /** Guest-physical base of guest RAM (= its IOVA), inside the edu device's 28-bit DMA mask. */
    static final long RAM_BASE = 0x10_0000;
    /** The page the guest balloons and the device reads. */
    static final int DATA_PAGE = 8;
    /** The page the device copies its buffer back to, for the CPU to read what the device read. */
    static final int READBACK_PAGE = 0;
    /** Where the mapping-limit probe maps its pages: above guest RAM, still below 256 MiB. */
    static final long PROBE_IOVA = 0x800_0000;
    /** The probe only exhausts small limits (the harness loads type1 with a small dma_entry_limit). */
    static final int PROBE_MAX = 1024;
    /** Bytes the device copies per read: half a page, inside the edu buffer's usable part. */
    static final int DMA_BYTES = 2048;
    private static final long PAGE = 4096;
    private static final long DATA_IOVA = RAM_BASE + DATA_PAGE * PAGE;
    private static final long READBACK_IOVA = RAM_BASE + READBACK_PAGE * PAGE;
    private static final Duration TIMEOUT = Duration.ofSeconds(60);

    /** One checked step: {@code holds} says whether what was seen is what the scenario expects. */
    public record Finding(String step, boolean holds, Map<String, Object> details) {
        public Finding {
            details = java.util.Collections.unmodifiableMap(new LinkedHashMap<>(details));
        }
    }

    private final Config config;
    private final String device;
    private final int group;
    private final Consumer<Finding> sink;

    private EduVfioScenario(Config config, String device, int group, Consumer<Finding> sink) {
        this.config = config;
        this.device = device;
        this.group = group;
        this.sink = sink;
    }

    /**
     * Find the edu device bound to vfio-pci under {@code sysfs}, or the one named by {@code device}, and run both
     * scenarios, inhibited first. Findings go to {@code sink} as they are made.
     *
     * @throws IllegalStateException if VFIO or the device is missing, naming what is missing
     */
    public static void run(Config config, Path sysfs, Optional<String> device, Consumer<Finding> sink) {
        Vfio.unavailabilityCause().ifPresent(cause -> {
            throw new IllegalStateException(cause);
        });
        String bdf = device.orElseGet(() -> findEdu(sysfs));
        int group = Vfio.groupOf(sysfs, bdf).orElseThrow(() -> new IllegalStateException("device " + bdf
                + " has no IOMMU group: is the IOMMU on (intel_iommu=on)?"));
        Vfio.groupUnavailabilityCause(group).ifPresent(cause -> {
            throw new IllegalStateException(cause);
        });
        sink.accept(new Finding("device", true, Map.of("device", bdf, "group", group,
                "groupDevices", Vfio.groupDevices(sysfs, group), "drivers", Vfio.groupDrivers(sysfs, group))));
        EduVfioScenario scenario = new EduVfioScenario(config, bdf, group, sink);
        scenario.runOnce(false);
        scenario.runOnce(true);
    }

    /** The PCI address of the first edu function under {@code sysfs}. */
    static String findEdu(Path sysfs) {
        Path devices = sysfs.resolve("bus/pci/devices");
        try (Stream<Path> all = Files.list(devices)) {
            return all.filter(d -> hex(d.resolve("vendor")) == EduDevice.VENDOR
                    && hex(d.resolve("device")) == EduDevice.DEVICE).map(d -> d.getFileName().toString()).sorted()
                    .findFirst().orElseThrow(() -> new IllegalStateException("no PCI device "
                            + String.format("%04x:%04x", EduDevice.VENDOR, EduDevice.DEVICE) + " (QEMU's edu) in "
                            + devices));
        } catch (IOException e) {
            throw new UncheckedIOException("cannot list " + devices, e);
        }
    }

    private static int hex(Path file) {
        try {
            return Integer.decode(Files.readString(file).trim());
        } catch (IOException | NumberFormatException e) {
            return -1;
        }
    }

    private void runOnce(boolean unsafe) {
        String name = unsafe ? "unsafe-ignore-inhibitor" : "inhibited";
        ProcessResources before = ProcessResources.snapshot();
        long lockedBefore = lockedKib();
        ActorSystem<Void> system = ActorSystem.create(Behaviors.empty(), "edu-" + name, config);
        HostMemory ram = HostMemory.anonymous("edu-ram", RAM_PAGES * PAGE);
        try {
            new Run(system, ram, name, unsafe).run();
        } finally {
            ActorCalls.terminate(system);
            ram.close();
        }
        Map<Integer, String> leaked = ProcessResources.snapshot().nativeFdsOpenedSince(before);
        long lockedAfter = lockedKib();
        sink.accept(new Finding(name + ": fds and pins released at stop", leaked.isEmpty()
                && lockedAfter == lockedBefore, Map.of("fdsLeft", leaked.toString(), "lockedKibBefore", lockedBefore,
                "lockedKibAfter", lockedAfter)));
    }

    /** One scenario's actor tree and steps. */
    private final class Run {
        private final HostMemory ram;
        private final String name;
        private final boolean unsafe;
        private final ActorCalls calls;
        private final ActorRef<DiscardManager.Command> discard;
        private final ActorRef<BalloonActor.Command> balloon;
        private final ActorRef<VfioContainerActor.Command> container;
        private final ActorRef<VfioGroupActor.Command> groupActor;
        private final ActorRef<AddressSpaceActor.Command> memory;

        Run(ActorSystem<Void> system, HostMemory ram, String name, boolean unsafe) {
            this.ram = ram;
            this.name = name;
            this.unsafe = unsafe;
            this.calls = new ActorCalls(system, TIMEOUT);
            memory = system.systemActorOf(AddressSpaceActor.create("memory"), "memory", Props.empty());
            discard = system.systemActorOf(DiscardManager.create("discard", BalloonSettings.DEFAULT.drainTimeout()),
                    "discard", Props.empty());
            balloon = system.systemActorOf(BalloonActor.create("balloon", memory,
                    BalloonSettings.DEFAULT.withUnsafeIgnoreInhibitor(unsafe), discard), "balloon",
                    BalloonActor.DISPATCHER);
            container = system.systemActorOf(VfioContainerActor.create("passthrough", memory,
                    IommuBackend.vfioType1()), "container", VfioContainerActor.DISPATCHER);
            groupActor = system.systemActorOf(VfioGroupActor.create(Integer.toString(group), DiscardMode.INHIBIT, discard),
                    "group", Props.empty());
        }

        void run() {
            fill(DATA_PAGE, (byte) 'A');
            calls.addRam(memory, RAM_BASE, ram);
            VfioGroupActor.AttachResult attached = calls.ask(groupActor, r -> new VfioGroupActor.Attach(container,
                    "passthrough", r));
            boolean attachedOk = attached instanceof VfioGroupActor.Attached;
            sink.accept(new Finding(name + ": group attached and guest RAM mapped", attachedOk,
                    Map.of("result", attached.toString())));
            if (!attachedOk) {
                return;
            }
            reportKernel();
            EduDevice edu = openEdu(calls.dma(container, (ActorRef<ContainerDmaActor.DeviceResult> r) ->
                    new ContainerDmaActor.OpenVfioDevice(group, device, r), ContainerDmaActor.VfioDeviceOpened.class)
                    .device());
            if (!unsafe) {
                probeRefusals();
            }
            coherence(edu);
        }

        private void reportKernel() {
            VfioContainerActor.State state = calls.ask(container, VfioContainerActor.GetState::new);
            VfioIommuInfo info = kernelInfo();
            Map<String, Object> details = new LinkedHashMap<>();
            details.put("pageSizes", "0x" + Long.toHexString(info.pageSizes()));
            details.put("iovaRanges", info.iovaRanges().map(List::toString).orElse("not reported"));
            details.put("dmaAvailable", info.dmaAvailable().isPresent() ? info.dmaAvailable().getAsInt() : -1);
            details.put("mappings", state.mappings().toString());
            details.put("pinnedBytes", state.pinnedBytes());
            details.put("lockedKib", lockedKib());
            boolean ramMapped = state.mappings().size() == 1 && state.mappings().get(0).iova()
                    .equals(AddressRange.of(RAM_BASE, RAM_PAGES * PAGE));
            sink.accept(new Finding(name + ": VFIO_IOMMU_GET_INFO and the RAM mapping", ramMapped
                    && (info.pageSizes() & PAGE) != 0, details));
        }

        /** VFIO_IOMMU_GET_INFO now, not as cached at open. */
        private VfioIommuInfo kernelInfo() {
            return calls.dma(container, ContainerDmaActor.ReadKernelInfo::new, ContainerDmaActor.KernelInfo.class)
                    .info();
        }

        private EduDevice openEdu(VfioDevice vfio) {
            VfioDeviceInfo info = vfio.info();
            VfioRegionInfo bar0 = vfio.regionInfo(VfioAbi.Pci.BAR0_REGION_INDEX);
            VfioRegionInfo config = vfio.regionInfo(VfioAbi.Pci.CONFIG_REGION_INDEX);
            int commandBefore = vfio.enableBusMaster();
            int commandAfter = (int) vfio.readConfig(VfioAbi.Pci.COMMAND, 2);
            String reset;
            if (info.resettable()) {
                vfio.reset();
                vfio.enableBusMaster(); // a reset clears the command register
                reset = "done";
            } else {
                reset = "not supported by the device";
            }
            EduDevice edu = EduDevice.attach(vfio, Duration.ofSeconds(10));
            int liveness = edu.liveness(0x12345678);
            int mapped = 0;
            String mmapped = "BAR0 not mmap-able";
            if (bar0.mappable()) { // the same register through an mmap of the BAR instead of pread
                try (VfioRegionMapping mapping = vfio.map(VfioAbi.Pci.BAR0_REGION_INDEX, 0, PAGE)) {
                    mapped = mapping.buffer().getInt(0);
                    mmapped = "0x" + Integer.toHexString(mapped);
                }
            }
            Map<String, Object> details = new LinkedHashMap<>();
            details.put("flags", info.flags());
            details.put("pci", info.pci());
            details.put("regions", info.numRegions());
            details.put("irqs", info.numIrqs());
            details.put("bar0Size", bar0.size());
            details.put("bar0Mappable", bar0.mappable());
            details.put("configSize", config.size());
            details.put("commandBefore", "0x" + Integer.toHexString(commandBefore));
            details.put("commandAfter", "0x" + Integer.toHexString(commandAfter));
            details.put("reset", reset);
            details.put("identification", "0x" + Integer.toHexString(edu.identification()));
            details.put("liveness", "0x" + Integer.toHexString(liveness));
            details.put("identificationByMmap", mmapped);
            boolean holds = info.pci() && bar0.size() == 1 << 20 && liveness == ~0x12345678
                    && (!bar0.mappable() || mapped == edu.identification())
                    && (commandAfter & VfioAbi.Pci.COMMAND_MASTER) != 0;
            sink.accept(new Finding(name + ": device info, regions, bus mastering, BAR0", holds, details));
            return edu;
        }

        /** The kernel's refusals, each as the contract's kind with the kernel's errno in its message. */
        private void probeRefusals() {
            HostAddress hostRam = ram.base();
            ContainerDmaActor.MapResult overlap = calls.dma(container, r -> new ContainerDmaActor.MapDma(
                    AddressRange.of(RAM_BASE + PAGE, PAGE), hostRam, DmaPermissions.READ_WRITE, r));
            refusal("overlap refused with EEXIST", overlap, IommuException.Kind.OVERLAP, "EEXIST");

            // The backend checks alignment before the kernel; ask the kernel itself too.
            ContainerDmaActor.MapResult misaligned = calls.dma(container, r -> new ContainerDmaActor.MapDma(
                    AddressRange.of(PROBE_IOVA + 512, PAGE), hostRam, DmaPermissions.READ_WRITE, r));
            refusal("misalignment refused before the kernel", misaligned, IommuException.Kind.MISALIGNED,
                    "aligned");
            ContainerDmaActor.KernelMapResult probe = calls.dma(container,
                    r -> new ContainerDmaActor.KernelMap(PROBE_IOVA + 512, hostRam, PAGE, r));
            String kernel = probe instanceof ContainerDmaActor.DmaFailed failed ? failed.reason() : "accepted";
            sink.accept(new Finding(name + ": misalignment refused by the kernel with EINVAL",
                    kernel.contains("EINVAL"), Map.of("error", kernel)));
            probeLimit();
        }

        private void refusal(String step, ContainerDmaActor.MapResult result, IommuException.Kind kind,
                String text) {
            boolean holds = result instanceof ContainerDmaActor.DmaFailed failed
                    && failed.kind().equals(Optional.of(kind)) && failed.reason().contains(text);
            sink.accept(new Finding(name + ": " + step, holds, Map.of("result", result.toString())));
        }

        /** Map single pages until type1 says ENOSPC, then take them all back. */
        private void probeLimit() {
            VfioIommuInfo info = kernelInfo();
            OptionalLong available = info.dmaAvailable().isPresent()
                    ? OptionalLong.of(Integer.toUnsignedLong(info.dmaAvailable().getAsInt())) : OptionalLong.empty();
            if (available.isEmpty() || available.getAsLong() > PROBE_MAX) {
                sink.accept(new Finding(name + ": mapping limit refused with ENOSPC", true, Map.of("skipped",
                        "type1 reports " + (available.isEmpty() ? "no DMA-available capability" : available
                                .getAsLong() + " free mappings") + "; load vfio_iommu_type1 with a dma_entry_limit "
                                + "of at most " + PROBE_MAX + " to probe it")));
                return;
            }
            int pages = (int) available.getAsLong() + 1;
            List<AddressRange> mapped = new ArrayList<>();
            ContainerDmaActor.MapResult last = null;
            try (HostMemory probe = HostMemory.anonymous("edu-limit-probe", pages * PAGE)) {
                probe.populate(0, probe.size());
                for (int i = 0; i < pages; i++) {
                    AddressRange iova = AddressRange.of(PROBE_IOVA + i * PAGE, PAGE);
                    HostAddress host = probe.base().checkedAdd(i * PAGE);
                    last = calls.dma(container, r -> new ContainerDmaActor.MapDma(iova, host,
                            DmaPermissions.READ_WRITE, r));
                    if (!(last instanceof ContainerDmaActor.Mapped)) {
                        break;
                    }
                    mapped.add(iova);
                }
                for (AddressRange iova : mapped) {
                    calls.dma(container, (ActorRef<ContainerDmaActor.UnmapResult> r) ->
                            new ContainerDmaActor.UnmapDma(iova, r));
                }
            }
            boolean holds = mapped.size() == available.getAsLong() && last instanceof ContainerDmaActor.DmaFailed f
                    && f.kind().equals(Optional.of(IommuException.Kind.LIMIT)) && f.reason().contains("ENOSPC");
            sink.accept(new Finding(name + ": mapping limit refused with ENOSPC", holds, Map.of("available",
                    available.getAsLong(), "mappedBeforeRefusal", mapped.size(), "result", String.valueOf(last))));
        }

        private void coherence(EduDevice edu) {
            HostAddress data = ram.base().checkedAdd(DATA_PAGE * PAGE);
            byte before = deviceRead(edu);
            OptionalLong pfnBefore = ram.pfn(data);
            sink.accept(new Finding(name + ": the device reads what the CPU wrote", before == 'A', Map.of(
                    "device", Character.toString(before), "cpu", Character.toString(ram.readByte(data)))));

            long frame = DATA_IOVA / PAGE;
            BalloonActor.InflateResult inflated = calls.ask(balloon, r -> new BalloonActor.Inflate(
                    new long[] {frame}, r));
            calls.ask(balloon, (ActorRef<BalloonActor.DeflateResult> r) -> new BalloonActor.Deflate(
                    new long[] {frame}, r));
            byte afterInflate = ram.readByte(data); // the guest touches the page again
            fill(DATA_PAGE, (byte) 'B');
            OptionalLong pfnAfter = ram.pfn(data);
            byte device = deviceRead(edu);
            byte cpu = ram.readByte(data);

            Map<String, Object> details = new LinkedHashMap<>();
            details.put("pagesDiscarded", inflated.pagesDiscarded());
            details.put("pagesSkipped", inflated.pagesSkipped());
            details.put("cpuAfterInflate", (int) afterInflate);
            details.put("pfnBefore", pfn(pfnBefore));
            details.put("pfnAfter", pfn(pfnAfter));
            details.put("device", Character.toString(device));
            details.put("cpu", Character.toString(cpu));
            boolean holds;
            String step;
            if (unsafe) {
                step = "discarded under the pin: the device reads the old page, the CPU the new one";
                holds = inflated.pagesDiscarded() == 1 && afterInflate == 0 && cpu == 'B' && device == 'A'
                        && !pfnBefore.equals(pfnAfter);
            } else {
                step = "the discard is skipped and the device reads the CPU's new data";
                holds = inflated.pagesSkipped() == 1 && inflated.pagesDiscarded() == 0 && afterInflate == 'A'
                        && cpu == 'B' && device == 'B' && pfnBefore.equals(pfnAfter);
            }
            sink.accept(new Finding(name + ": " + step, holds, details));
        }

        /** The device copies the data page into its buffer and the buffer out to the readback page. */
        private byte deviceRead(EduDevice edu) {
            fill(READBACK_PAGE, (byte) 0);
            edu.copyToDevice(DATA_IOVA, 0, DMA_BYTES);
            edu.copyFromDevice(0, READBACK_IOVA, DMA_BYTES);
            byte[] seen = ram.read(ram.base().checkedAdd(READBACK_PAGE * PAGE), DMA_BYTES);
            byte first = seen[0];
            for (byte b : seen) {
                if (b != first) {
                    return '?'; // a torn page: neither the old nor the new data
                }
            }
            return first;
        }

        private void fill(int page, byte value) {
            byte[] bytes = new byte[(int) PAGE];
            Arrays.fill(bytes, value);
            ram.write(ram.base().checkedAdd(page * PAGE), bytes);
        }
    }

    private static String pfn(OptionalLong pfn) {
        return pfn.isPresent() ? "0x" + Long.toHexString(pfn.getAsLong()) : "hidden";
    }

    /** Locked memory of this process in KiB: type1 charges its pins to {@code VmLck}. */
    static long lockedKib() {
        return ProcessResources.statusKib("VmLck");
    }
}
