package io.actovisor.actors.embedding;

import io.actovisor.actors.balloon.BalloonActor;
import io.actovisor.actors.balloon.BalloonSettings;
import io.actovisor.actors.balloon.VirtioBalloonActor;
import io.actovisor.actors.device.DeviceIo.Space;
import io.actovisor.actors.discard.DiscardManager;
import io.actovisor.actors.discard.DiscardMode;
import io.actovisor.actors.dma.DmaEngineActor;
import io.actovisor.actors.kvm.DelayPortActor;
import io.actovisor.actors.kvm.IoMap;
import io.actovisor.actors.kvm.KvmMemoryActor;
import io.actovisor.actors.kvm.ReportPortActor;
import io.actovisor.actors.kvm.SerialActor;
import io.actovisor.actors.device.DeviceTimeouts;
import io.actovisor.actors.kvm.VcpuHandle;
import io.actovisor.actors.memory.AddressSpaceActor;
import io.actovisor.actors.vfio.IommuBackend;
import io.actovisor.actors.vfio.VfioContainerActor;
import io.actovisor.actors.vfio.VfioGroupActor;
import io.actovisor.devices.iommu.pinned.PinnedIommu;
import io.actovisor.devices.boot.BootLayout;
import io.actovisor.devices.boot.GuestFirmware;
import io.actovisor.kernel.kvm.Kvm;
import io.actovisor.kernel.kvm.KvmVcpu;
import io.actovisor.kernel.kvm.KvmVm;
import io.actovisor.devices.serial.Uart16550;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.GuestAddress;
import io.actovisor.memory.GuestMemoryView;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.MemoryRegion;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import java.util.function.Function;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.Props;
import org.apache.pekko.actor.typed.SpawnProtocol;
import org.apache.pekko.actor.typed.eventstream.EventStream;
import org.apache.pekko.actor.typed.javadsl.AskPattern;

/**
 * A small VMM assembled from the actors alone: an address space, KVM memory slots, a balloon, a VFIO container
 * on the pinned backend with one group, a DMA engine behind it, and one vCPU running the firmware's workload.
 */
public final class EmbeddedVmm implements AutoCloseable {
    static final long RAM = 8L << 20;
    static final long BALLOON_MMIO = 0xd000_0000L;
    static final long DMA_MMIO = 0xd000_1000L;
    private static final Duration STEP = Duration.ofSeconds(30);

    private final ActorSystem<SpawnProtocol.Command> system = ActorSystem.create(SpawnProtocol.create(), "vmm");
    private final HostMemory ram = HostMemory.anonymous("embedded-ram", RAM);
    private final GuestMemoryView guestMemory = GuestMemoryView.empty();
    private final Kvm kvm = Kvm.open();
    private final KvmVm vm = kvm.createVm();
    private final ActorRef<BalloonActor.Command> balloon;
    private final VcpuHandle vcpu;

    public EmbeddedVmm(ActorRef<VcpuHandle.Event> observer) {
        // The address space publishes guest memory into guestMemory; KVM slots mirror it from the first commit on.
        var memory = spawn(AddressSpaceActor.create("memory", AddressSpaceActor.DEFAULT_ACK_TIMEOUT, guestMemory));
        AddressSpaceActor.SubscribeResult slots = ask(system, r -> new SpawnProtocol.Spawn<>(
                KvmMemoryActor.create(vm, memory, Optional.of(r)), "kvm-memory", Props.empty(), system.ignoreRef()));
        require(slots instanceof AddressSpaceActor.Subscribed, slots);
        // Discards go through the discard manager; the container unmaps a block before the balloon discards it.
        var discard = spawn(DiscardManager.create("discard", DiscardManager.Settings.withDrainTimeout(STEP),
                Optional.empty()));
        balloon = spawn(BalloonActor.create("balloon", memory, BalloonSettings.DEFAULT, discard),
                BalloonActor.DISPATCHER);
        var container = spawn(VfioContainerActor.create("c0", memory, IommuBackend.shared(PinnedIommu.BACKEND,
                PinnedIommu::open), DiscardMode.COORDINATED, VfioContainerActor.DEFAULT_DISCARD_BLOCK_SIZE),
                VfioContainerActor.DISPATCHER);
        var group = spawn(VfioGroupActor.create("g0", DiscardMode.COORDINATED, discard));

        // Guest RAM in one commit: acknowledged once the slots, the balloon and (below) the container have it.
        AddressSpaceActor.CommitResult committed = ask(memory, r -> new AddressSpaceActor.Commit(List.of(
                new AddressSpaceActor.AddRegion(MemoryRegion.ram("ram", GuestAddress.ZERO, ram))), r));
        require(committed instanceof AddressSpaceActor.Committed, committed);
        VfioGroupActor.AttachResult attached = ask(group, r -> new VfioGroupActor.Attach(container, "c0", r));
        require(attached instanceof VfioGroupActor.Attached, attached);

        // Devices: ports, the virtio-balloon and the DMA engine (its DMA goes through the container's pinned IOMMU).
        IoMap io = new IoMap(List.of(
                new IoMap.Entry(Space.PIO, AddressRange.of(Uart16550.COM1, Uart16550.PORTS), "com1",
                        spawn(SerialActor.create("com1"))),
                new IoMap.Entry(Space.PIO, AddressRange.of(ReportPortActor.BASE, ReportPortActor.PORTS), "reports",
                        spawn(ReportPortActor.create())),
                new IoMap.Entry(Space.PIO, AddressRange.of(DelayPortActor.PORT, 4), "delay",
                        spawn(DelayPortActor.create())),
                new IoMap.Entry(Space.MMIO, AddressRange.of(BALLOON_MMIO, 4096), "balloon", spawn(
                        VirtioBalloonActor.create(guestMemory, balloon, Optional.of(discard), true, STEP))),
                new IoMap.Entry(Space.MMIO, AddressRange.of(DMA_MMIO, 4096), "dma",
                        spawn(DmaEngineActor.create(container)))));

        // The firmware goes into RAM as the address space publishes it; one vCPU runs it.
        BootLayout.write(guestMemory.current(), GuestFirmware.bundled(),
                new BootLayout.BootInfo("workload", RAM, RAM / 4, 20, DMA_MMIO, BALLOON_MMIO));
        KvmVcpu kvmVcpu = vm.createVcpu(0);
        BootLayout.enterLongMode(kvmVcpu, kvm.supportedCpuid());
        vcpu = VcpuHandle.spawn(kvmVcpu, io, observer, system.scheduler(), DeviceTimeouts.of(system), "embedded-0");
        vcpu.start();
    }

    /** Hear the VMM's events of {@code type}: guest console lines, reports, topology changes. */
    public <E> void subscribe(Class<E> type, ActorRef<E> subscriber) {
        system.eventStream().tell(new EventStream.Subscribe<>(type, subscriber));
    }

    /** Ask the guest to give {@code bytes} of its RAM to the balloon. */
    public BalloonActor.TargetResult setBalloonTarget(long bytes) {
        return ask(balloon, r -> new BalloonActor.SetTarget(bytes, r));
    }

    /** How much the balloon holds and what it discarded or skipped. */
    public BalloonActor.BalloonStatus balloonStatus() {
        return ask(balloon, BalloonActor.GetStatus::new);
    }

    /** Stop the vCPU, then every actor (the container unpins), then release KVM and the guest's RAM. */
    @Override
    public void close() {
        vcpu.awaitStopped(STEP);
        system.terminate();
        system.getWhenTerminated().toCompletableFuture().join();
        vm.close();
        kvm.close();
        ram.close();
    }

    private <T> ActorRef<T> spawn(Behavior<T> behavior) {
        return spawn(behavior, Props.empty());
    }

    private <T> ActorRef<T> spawn(Behavior<T> behavior, Props props) {
        return ask(system, r -> new SpawnProtocol.Spawn<>(behavior, "", props, r));
    }

    private <Q, R> R ask(ActorRef<Q> to, Function<ActorRef<R>, Q> message) {
        return AskPattern.ask(to, message::apply, STEP, system.scheduler()).toCompletableFuture().join();
    }

    private static void require(boolean ok, Object answer) {
        if (!ok) {
            throw new IllegalStateException("the VMM could not start: " + answer);
        }
    }
}
