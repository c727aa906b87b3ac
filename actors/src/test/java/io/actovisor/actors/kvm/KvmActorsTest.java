package io.actovisor.actors.kvm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.actors.device.DeviceIo;
import io.actovisor.actors.device.DeviceTimeouts;
import io.actovisor.actors.events.ActovisorEvent;
import io.actovisor.actors.memory.AddressSpaceActor;
import io.actovisor.devices.boot.BootLayout;
import io.actovisor.devices.boot.GuestFirmware;
import io.actovisor.kernel.kvm.Kvm;
import io.actovisor.kernel.kvm.KvmVcpu;
import io.actovisor.kernel.kvm.KvmVm;
import io.actovisor.kernel.kvm.MemorySlot;
import io.actovisor.kernel.kvm.VcpuThread;
import io.actovisor.devices.serial.Uart16550;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.FlatView;
import io.actovisor.memory.GuestAddress;
import io.actovisor.memory.GuestMemory;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.MemoryRegion;
import io.actovisor.memory.sys.ProcessResources;
import io.actovisor.memory.testing.NativeRequirement;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.eventstream.EventStream;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * vCPU exit dispatch and memory-slot actors on real KVM, with the bundled firmware. The vCPU thread's own control
 * (kick, pause before start, stray signals, stop) is tested in {@code kernel}'s {@code VcpuThreadTest}.
 */
@Tag("kvm")
class KvmActorsTest {
    private static final long RAM = 4L << 20;
    private static final long WORK = 1L << 20;
    private static ActorTestKit kit;
    private static int vms;

    /** Per test, so that a machine without KVM reports each test skipped with the reason, not a class of none. */
    @BeforeEach
    void start() {
        NativeRequirement.requireKvm(Kvm.unavailabilityCause());
        if (kit == null) {
            kit = ActorTestKit.create();
        }
    }

    @AfterAll
    static void stop() {
        if (kit != null) {
            kit.shutdownTestKit();
        }
    }

    /** One small VM: RAM at 0 through an address space, KVM slots, the console and report port, one vCPU. */
    private static final class Guest implements AutoCloseable {
        final HostMemory ram = HostMemory.anonymous("kvm-actors-ram", RAM);
        final Kvm kvm = Kvm.open();
        final KvmVm vm = kvm.createVm();
        final ActorRef<AddressSpaceActor.Command> memory;
        final ActorRef<KvmMemoryActor.Command> slots;
        final ActorRef<DeviceIo.Command> reports;
        final TestProbe<VcpuHandle.Event> events = kit.createTestProbe();
        final VcpuHandle handle;

        Guest(String program, List<IoMap.Entry> extraDevices, long... args) {
            this(program, extraDevices, DeviceTimeouts.DEFAULT, args);
        }

        Guest(String program, List<IoMap.Entry> extraDevices, DeviceTimeouts timeouts, long... args) {
            int n = vms++;
            memory = kit.spawn(AddressSpaceActor.create("guest-memory-" + n), "guest-memory-" + n);
            MemoryRegion region = MemoryRegion.ram("ram", GuestAddress.ZERO, ram);
            GuestMemory guest = GuestMemory.of(FlatView.of(List.of(region)));
            BootLayout.write(guest, GuestFirmware.bundled(), new BootLayout.BootInfo(program, RAM, WORK, args));
            TestProbe<AddressSpaceActor.SubscribeResult> subscribed = kit.createTestProbe();
            slots = kit.spawn(KvmMemoryActor.create(vm, memory, Optional.of(subscribed.ref())), "slots-" + n);
            assertInstanceOf(AddressSpaceActor.Subscribed.class, subscribed.receiveMessage());
            TestProbe<AddressSpaceActor.CommitResult> committed = kit.createTestProbe();
            memory.tell(new AddressSpaceActor.Commit(List.of(new AddressSpaceActor.AddRegion(region)),
                    committed.ref()));
            assertInstanceOf(AddressSpaceActor.Committed.class, committed.receiveMessage());
            ActorRef<DeviceIo.Command> serial = kit.spawn(SerialActor.create("com1"), "com1-" + n);
            reports = kit.spawn(ReportPortActor.create(), "reports-" + n);
            List<IoMap.Entry> devices = new ArrayList<>(List.of(
                    new IoMap.Entry(DeviceIo.Space.PIO, AddressRange.of(Uart16550.COM1, Uart16550.PORTS), "com1",
                            serial),
                    new IoMap.Entry(DeviceIo.Space.PIO, AddressRange.of(ReportPortActor.BASE, ReportPortActor.PORTS),
                            "reports", reports)));
            devices.addAll(extraDevices);
            KvmVcpu vcpu = vm.createVcpu(0);
            BootLayout.enterLongMode(vcpu, kvm.supportedCpuid());
            handle = VcpuHandle.spawn(vcpu, new IoMap(devices), events.ref(), kit.scheduler(), timeouts,
                    "test-" + n);
            handle.start();
        }

        List<MemorySlot> slots() {
            TestProbe<List<MemorySlot>> probe = kit.createTestProbe();
            slots.tell(new KvmMemoryActor.GetSlots(probe.ref()));
            return probe.receiveMessage();
        }

        AddressSpaceActor.CommitResult commit(AddressSpaceActor.RegionChange change) {
            TestProbe<AddressSpaceActor.CommitResult> probe = kit.createTestProbe();
            memory.tell(new AddressSpaceActor.Commit(List.of(change), probe.ref()));
            return probe.receiveMessage(Duration.ofSeconds(10));
        }

        @Override
        public void close() {
            assertTrue(handle.awaitStopped(Duration.ofSeconds(10)), "the vCPU thread ends once stopped");
            assertEquals(VcpuThread.State.STOPPED, handle.state());
            kit.stop(slots);
            kit.stop(memory);
            vm.close();
            kvm.close();
            ram.close();
        }
    }

    @Test
    void theGuestRunsToHaltAndReportsTheChecksumOfItsMemory() {
        TestProbe<ActovisorEvent.GuestConsoleLine> console = kit.createTestProbe();
        TestProbe<ActovisorEvent.GuestReported> reported = kit.createTestProbe();
        kit.system().eventStream().tell(new EventStream.Subscribe<>(ActovisorEvent.GuestConsoleLine.class,
                console.ref()));
        kit.system().eventStream().tell(new EventStream.Subscribe<>(ActovisorEvent.GuestReported.class,
                reported.ref()));
        ProcessResources before = ProcessResources.snapshot();
        try (Guest guest = new Guest("memtest", List.of(), 42)) {
            assertInstanceOf(VcpuHandle.Halted.class, guest.events.receiveMessage(Duration.ofSeconds(30)));
            assertEquals("hello from guest", console.receiveMessage().line());
            long checksum = BootLayout.checksum(GuestMemory.of(FlatView.of(List.of(MemoryRegion.ram("ram",
                    GuestAddress.ZERO, guest.ram)))), BootLayout.WORK_BASE, WORK);
            assertEquals(checksum, reported.receiveMessage().value(),
                    "the guest's checksum equals the host's checksum of guest memory");
            assertEquals(1, guest.slots().size());
        }
        assertTrue(ProcessResources.snapshot().nativeFdsOpenedSince(before).isEmpty(), "no KVM fd left");
    }

    @Test
    void regionsAddedAndRemovedWhilePausedChangeTheSlotsAndStopIsPrompt() {
        TestProbe<ActovisorEvent.GuestConsoleLine> console = kit.createTestProbe();
        kit.system().eventStream().tell(new EventStream.Subscribe<>(ActovisorEvent.GuestConsoleLine.class,
                console.ref()));
        try (HostMemory extra = HostMemory.anonymous("kvm-extra", 2L << 20);
                Guest guest = new Guest("spin", List.of())) {
            console.fishForMessage(Duration.ofSeconds(30), m -> m.line().equals("spinning")
                    ? org.apache.pekko.actor.testkit.typed.javadsl.FishingOutcomes.complete()
                    : org.apache.pekko.actor.testkit.typed.javadsl.FishingOutcomes.continueAndIgnore());
            TestProbe<VcpuThread.State> state = kit.createTestProbe();
            guest.handle.pause(state.ref());
            assertEquals(VcpuThread.State.PAUSED, state.receiveMessage(Duration.ofSeconds(10)));
            MemoryRegion high = MemoryRegion.ram("high", new GuestAddress(1L << 30), extra);
            assertInstanceOf(AddressSpaceActor.Committed.class, guest.commit(new AddressSpaceActor.AddRegion(high)));
            assertEquals(List.of(AddressRange.of(0, RAM), AddressRange.of(1L << 30, 2L << 20)),
                    guest.slots().stream().map(MemorySlot::guest).sorted(java.util.Comparator.comparingLong(
                            AddressRange::base)).toList());
            assertInstanceOf(AddressSpaceActor.Committed.class, guest.commit(
                    new AddressSpaceActor.RemoveRegion("high")));
            assertEquals(1, guest.slots().size());
            assertEquals(VcpuThread.State.RUNNING, guest.handle.resume());
            // close() stops the vCPU while it spins in guest code; it must end well within the bound.
        }
    }

    @Test
    void mmioAccessesReachTheDeviceThatOwnsTheAddress() {
        TestProbe<ActovisorEvent.GuestReported> reported = kit.createTestProbe();
        kit.system().eventStream().tell(new EventStream.Subscribe<>(ActovisorEvent.GuestReported.class,
                reported.ref()));
        List<String> accesses = new ArrayList<>();
        ActorRef<DeviceIo.Command> echo = kit.spawn(echoDevice(accesses), "echo");
        long base = 0xd000_0000L;
        try (Guest guest = new Guest("mmio", List.of(new IoMap.Entry(DeviceIo.Space.MMIO, AddressRange.of(base,
                0x1000), "echo", echo)), base + 0x10, 0x1122334455667788L)) {
            assertInstanceOf(VcpuHandle.Halted.class, guest.events.receiveMessage(Duration.ofSeconds(30)));
            assertEquals(0x1122334455667788L, reported.receiveMessage().value());
            assertEquals(0x55667788L ^ 0x18, reported.receiveMessage().value(), "a 32-bit read at offset 0x18");
            assertEquals(List.of("write 0x10 8", "read 0x10 8", "read 0x18 4"), accesses);
        }
    }

    @Test
    void aDeviceThatNeverAnswersIsADeviceErrorAndTheGuestGoesOn() {
        TestProbe<ActovisorEvent.GuestReported> reported = kit.createTestProbe();
        kit.system().eventStream().tell(new EventStream.Subscribe<>(ActovisorEvent.GuestReported.class,
                reported.ref()));
        ActorRef<DeviceIo.Command> silent = kit.spawn(Behaviors.<DeviceIo.Command>ignore(), "silent");
        long base = 0xd000_0000L;
        DeviceTimeouts quick = new DeviceTimeouts(Duration.ofMillis(20));
        try (Guest guest = new Guest("mmio", List.of(new IoMap.Entry(DeviceIo.Space.MMIO, AddressRange.of(base,
                0x1000), "silent", silent)), quick, base + 0x10, 0x1122334455667788L)) {
            assertInstanceOf(VcpuHandle.Halted.class, guest.events.receiveMessage(Duration.ofSeconds(30)),
                    "the vCPU went on after each unanswered access");
            assertEquals(-1L, reported.receiveMessage().value(), "a 64-bit read nobody answers reads all ones");
            assertEquals(0xffff_ffffL, reported.receiveMessage().value(), "so does a 32-bit read");
            assertEquals(3, guest.handle.counters().deviceErrors(), "the write and both reads, counted");
        }
    }

    @Test
    void stopEndsAWaitOnADeviceAndLeavesNothingBehind() {
        ProcessResources before = ProcessResources.snapshot();
        TestProbe<DeviceIo.Command> device = kit.createTestProbe();
        long base = 0xd000_0000L;
        try (Guest guest = new Guest("mmio", List.of(new IoMap.Entry(DeviceIo.Space.MMIO, AddressRange.of(base,
                0x1000), "probe", device.ref())), base + 0x10, 7)) {
            device.expectMessageClass(DeviceIo.Write.class, Duration.ofSeconds(30));
            // The vCPU now waits for an answer that never comes; by default it would wait 35 s.
            assertTrue(guest.handle.awaitStopped(Duration.ofSeconds(10)), "stop does not wait for the device");
            assertEquals(1, guest.handle.counters().deviceErrors(), "the abandoned write is a device error");
            device.expectNoMessage(Duration.ofMillis(200));
        }
        assertTrue(ProcessResources.snapshot().nativeFdsOpenedSince(before).isEmpty(), "no KVM fd left");
    }

    /** A register file: reads return the last value written at that offset, or the offset itself. */
    private static Behavior<DeviceIo.Command> echoDevice(List<String> accesses) {
        java.util.Map<Long, Long> registers = new java.util.HashMap<>();
        return Behaviors.receive(DeviceIo.Command.class)
                .onMessage(DeviceIo.Write.class, w -> {
                    accesses.add("write 0x" + Long.toHexString(w.offset()) + " " + w.size());
                    registers.put(w.offset(), w.value());
                    w.replyTo().tell(new DeviceIo.Completed(0));
                    return Behaviors.same();
                })
                .onMessage(DeviceIo.Read.class, r -> {
                    accesses.add("read 0x" + Long.toHexString(r.offset()) + " " + r.size());
                    long v = registers.getOrDefault(r.offset(), r.offset() == 0x18 ? 0x55667788L ^ 0x18 : 0);
                    r.replyTo().tell(new DeviceIo.Completed(v));
                    return Behaviors.same();
                })
                .build();
    }
}
