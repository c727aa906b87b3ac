package io.actovisor.demos.coherence;

import com.typesafe.config.Config;
import io.actovisor.actors.balloon.BalloonActor;
import io.actovisor.actors.balloon.BalloonSettings;
import io.actovisor.actors.discard.DiscardManager;
import io.actovisor.actors.discard.DiscardMode;
import io.actovisor.actors.memory.AddressSpaceActor;
import io.actovisor.actors.vfio.IommuBackend;
import io.actovisor.actors.vfio.ContainerDmaActor;
import io.actovisor.actors.vfio.VfioContainerActor;
import io.actovisor.actors.vfio.VfioGroupActor;
import io.actovisor.devices.coherence.CoherenceAudit;
import io.actovisor.devices.coherence.CoherenceReport;
import io.actovisor.devices.coherence.CpuView;
import io.actovisor.devices.iommu.pinned.PinnedIommu;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.HostMemory;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.Optional;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.javadsl.Behaviors;

/**
 * A balloon discard under a pin, through the actor tree on the {@code pinned} backend (real long-term pins): a VFIO group is
 * attached, the guest balloons pages out and back in and writes new data to them, and a coherence audit compares
 * what the device reads through the IOMMU with what the CPU reads.
 *
 * <p>With the inhibitor honoured, the balloon skips the discard and the device keeps seeing what the CPU wrote.
 * With {@code unsafe-ignore-inhibitor}, the discard runs under the pin: the CPU faults in new pages while the device
 * keeps reading the old ones, exactly on the ballooned pages. With a {@code coordinated} container the guest balloons
 * a whole block: the container unmaps and unpins it, the balloon discards it (the device cannot reach it meanwhile),
 * the deflate maps it again before it is answered, and the audit of exactly that block finds device and CPU agreeing.
 * Each run has its own actor system and memory and leaves nothing behind.
 */
public final class CoherenceScenario {
    /** Guest RAM of the scenario, in 4 KiB pages. */
    public static final int RAM_PAGES = 64;
    /** Guest-physical base of guest RAM (= its IOVA). */
    public static final long RAM_BASE = 0x10_0000;
    /** The frames the guest inflates: pages 8 to 15 of RAM. */
    public static final long[] INFLATED = {264, 265, 266, 267, 268, 269, 270, 271};
    /** The block size of the coordinated scenario: 64 KiB, 16 pages. */
    public static final long BLOCK = 64 * 1024;
    /** The frames the guest inflates in the coordinated scenario: pages 16 to 31 of RAM, one whole block. */
    public static final long[] BLOCK_FRAMES = java.util.stream.LongStream.range(272, 288).toArray();
    private static final long PAGE = 4096;
    private static final Duration TIMEOUT = Duration.ofSeconds(20);

    /**
     * What one run showed.
     *
     * @param pagesDiscarded pages the balloon really discarded
     * @param pagesSkipped   pages it did not discard because inhibited
     * @param report         the audit after the guest wrote new data
     * @param deviceByte     what the device reads at the first ballooned page
     * @param cpuByte        what the CPU reads there
     * @param audited        what the audit covered: all of guest RAM, or (coordinated) exactly the discarded block
     * @param duringDiscard  coordinated: what a device read of the block returned while it was discarded
     */
    public record Outcome(String scenario, boolean unsafe, long pagesDiscarded, long pagesSkipped,
            CoherenceReport report, byte deviceByte, byte cpuByte, String audited, String duringDiscard) {
        /** Guest addresses of the pages the device and the CPU disagree on. */
        public List<Long> incoherentPages() {
            return report.incoherent().stream().map(CoherenceReport.IncoherentPage::guestAddress).toList();
        }
    }

    private CoherenceScenario() {
    }

    /** Run one scenario: {@code unsafe} overrides the inhibitor. */
    public static Outcome run(Config config, boolean unsafe) {
        String name = unsafe ? "unsafe-ignore-inhibitor" : "inhibited";
        return run(config, name, unsafe, false);
    }

    /** Run the coordinated scenario. */
    public static Outcome runCoordinated(Config config) {
        return run(config, "coordinated", false, true);
    }

    private static Outcome run(Config config, String name, boolean unsafe, boolean coordinated) {
        ActorSystem<Void> system = ActorSystem.create(Behaviors.empty(), "coherence-" + name, config);
        HostMemory ram = HostMemory.anonymous("coherence-ram", RAM_PAGES * PAGE);
        try {
            return coordinated ? runCoordinated(system, ram) : run(system, ram, name, unsafe);
        } finally {
            ActorCalls.terminate(system);
            // Every actor (and with it the IOMMU and its pins) is gone: now the memory can go too.
            ram.close();
        }
    }

    private static Outcome run(ActorSystem<Void> system, HostMemory ram, String name, boolean unsafe) {
        ActorCalls calls = new ActorCalls(system, TIMEOUT);
        for (int p = 0; p < RAM_PAGES; p++) {
            byte[] page = new byte[(int) PAGE];
            Arrays.fill(page, (byte) 'A');
            ram.write(ram.base().checkedAdd(p * PAGE), page);
        }
        ActorRef<AddressSpaceActor.Command> memory = system.systemActorOf(AddressSpaceActor.create("memory"),
                "memory", org.apache.pekko.actor.typed.Props.empty());
        ActorRef<DiscardManager.Command> discard = system.systemActorOf(DiscardManager.create("discard",
                BalloonSettings.DEFAULT.drainTimeout()), "discard", org.apache.pekko.actor.typed.Props.empty());
        ActorRef<BalloonActor.Command> balloon = system.systemActorOf(BalloonActor.create("balloon", memory,
                BalloonSettings.DEFAULT.withUnsafeIgnoreInhibitor(unsafe), discard), "balloon",
                BalloonActor.DISPATCHER);
        ActorRef<VfioContainerActor.Command> container = system.systemActorOf(VfioContainerActor.create("container",
                memory, IommuBackend.shared(PinnedIommu.BACKEND, PinnedIommu::open)), "container",
                VfioContainerActor.DISPATCHER);
        ActorRef<VfioGroupActor.Command> group = system.systemActorOf(VfioGroupActor.create("dma-device",
                DiscardMode.INHIBIT, discard), "group", org.apache.pekko.actor.typed.Props.empty());

        calls.addRam(memory, RAM_BASE, ram);
        VfioGroupActor.AttachResult attached = calls.ask(group, r -> new VfioGroupActor.Attach(container,
                "container", r));
        if (attached instanceof VfioGroupActor.AttachFailed failed) {
            throw new IllegalStateException("the DMA device's group could not attach: " + failed.reason());
        }
        CpuView cpu = CpuView.of(List.of(ram));
        CoherenceAudit.PfnLedger ledger = calls.dma(container,
                (ActorRef<ContainerDmaActor.LedgerResult> r) -> new ContainerDmaActor.TakePfnLedger(cpu, r),
                ContainerDmaActor.LedgerTaken.class).ledger();

        BalloonActor.InflateResult inflated = calls.ask(balloon, r -> new BalloonActor.Inflate(INFLATED, r));
        calls.ask(balloon, (ActorRef<BalloonActor.DeflateResult> r) -> new BalloonActor.Deflate(INFLATED, r));
        for (long frame : INFLATED) {
            byte[] page = new byte[(int) PAGE];
            Arrays.fill(page, (byte) 'B');
            ram.write(ram.base().checkedAdd(frame * PAGE - RAM_BASE), page);
        }
        CoherenceReport report = calls.dma(container, (ActorRef<ContainerDmaActor.AuditResult> r) ->
                new ContainerDmaActor.Audit(cpu, Optional.of(ledger), Optional.empty(), r),
                ContainerDmaActor.Audited.class).report();
        long first = INFLATED[0] * PAGE;
        ContainerDmaActor.ReadResult read = calls.dma(container, r -> new ContainerDmaActor.DmaRead(first, 1, r));
        if (read instanceof ContainerDmaActor.DmaFailed failed) {
            throw new IllegalStateException("the device could not read IOVA 0x" + Long.toHexString(first) + ": "
                    + failed.reason());
        }
        byte deviceByte = ((ContainerDmaActor.DataRead) read).data()[0];
        byte cpuByte = ram.readByte(ram.base().checkedAdd(first - RAM_BASE));
        return new Outcome(name, unsafe, inflated.pagesDiscarded(), inflated.pagesSkipped(), report, deviceByte,
                cpuByte, "all guest RAM", "-");
    }

    private static Outcome runCoordinated(ActorSystem<Void> system, HostMemory ram) {
        ActorCalls calls = new ActorCalls(system, TIMEOUT);
        fill(ram, 0, RAM_PAGES, (byte) 'A');
        ActorRef<AddressSpaceActor.Command> memory = system.systemActorOf(AddressSpaceActor.create("memory"),
                "memory", org.apache.pekko.actor.typed.Props.empty());
        ActorRef<DiscardManager.Command> discard = system.systemActorOf(DiscardManager.create("discard",
                DiscardManager.Settings.withDrainTimeout(BalloonSettings.DEFAULT.drainTimeout()).withBlockSize(BLOCK),
                java.util.Optional.empty()), "discard", org.apache.pekko.actor.typed.Props.empty());
        ActorRef<BalloonActor.Command> balloon = system.systemActorOf(BalloonActor.create("balloon", memory,
                BalloonSettings.DEFAULT, discard), "balloon", BalloonActor.DISPATCHER);
        ActorRef<VfioContainerActor.Command> container = system.systemActorOf(VfioContainerActor.create("container",
                memory, IommuBackend.shared(PinnedIommu.BACKEND, PinnedIommu::open), DiscardMode.COORDINATED, BLOCK),
                "container", VfioContainerActor.DISPATCHER);
        ActorRef<VfioGroupActor.Command> group = system.systemActorOf(VfioGroupActor.create("dma-device",
                DiscardMode.COORDINATED, discard), "group", org.apache.pekko.actor.typed.Props.empty());
        calls.addRam(memory, RAM_BASE, ram);
        // The guest driver negotiated VIRTIO_BALLOON_F_MUST_TELL_HOST: it deflates before it reuses a page.
        discard.tell(new DiscardManager.SetGuestContract(true));
        VfioGroupActor.AttachResult attached = calls.ask(group, r -> new VfioGroupActor.Attach(container,
                "container", r));
        if (attached instanceof VfioGroupActor.AttachFailed failed) {
            throw new IllegalStateException("the DMA device's group could not attach: " + failed.reason());
        }
        long first = BLOCK_FRAMES[0] * PAGE;
        BalloonActor.InflateResult inflated = calls.ask(balloon, r -> new BalloonActor.Inflate(BLOCK_FRAMES, r));
        ContainerDmaActor.ReadResult during = calls.dma(container, r -> new ContainerDmaActor.DmaRead(first, 1, r));
        String duringDiscard = during instanceof ContainerDmaActor.DataRead data ? "read " + show(data.data()[0])
                : "fault";
        calls.ask(balloon, (ActorRef<BalloonActor.DeflateResult> r) -> new BalloonActor.Deflate(BLOCK_FRAMES, r));
        fill(ram, (int) (first - RAM_BASE) / (int) PAGE, BLOCK_FRAMES.length, (byte) 'B');
        CpuView cpu = CpuView.of(List.of(ram));
        AddressRange block = AddressRange.of(first, BLOCK);
        CoherenceReport report = calls.dma(container, (ActorRef<ContainerDmaActor.AuditResult> r) ->
                new ContainerDmaActor.Audit(cpu, Optional.empty(), Optional.of(block), r),
                ContainerDmaActor.Audited.class).report();
        ContainerDmaActor.ReadResult read = calls.dma(container, r -> new ContainerDmaActor.DmaRead(first, 1, r));
        if (read instanceof ContainerDmaActor.DmaFailed failed) {
            throw new IllegalStateException("the device could not read IOVA 0x" + Long.toHexString(first)
                    + " after the remap: " + failed.reason());
        }
        byte deviceByte = ((ContainerDmaActor.DataRead) read).data()[0];
        byte cpuByte = ram.readByte(ram.base().checkedAdd(first - RAM_BASE));
        return new Outcome("coordinated", false, inflated.pagesDiscarded(), inflated.pagesSkipped(), report,
                deviceByte, cpuByte, "the discarded block " + block + " after deflate and remap", duringDiscard);
    }

    private static void fill(HostMemory ram, int firstPage, int pages, byte value) {
        byte[] page = new byte[(int) PAGE];
        Arrays.fill(page, value);
        for (int p = firstPage; p < firstPage + pages; p++) {
            ram.write(ram.base().checkedAdd(p * PAGE), page);
        }
    }

    static String show(byte b) {
        return b >= 0x20 && b < 0x7f ? "'" + (char) b + "'" : String.format("0x%02x", b);
    }
}
