package io.actovisor.actors.balloon;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.actors.discard.DiscardManager;
import io.actovisor.actors.discard.DiscardMode;
import io.actovisor.actors.discard.DiscardState;
import io.actovisor.actors.events.ActovisorEvent;
import io.actovisor.actors.testing.NativeTestKit;
import io.actovisor.actors.vfio.IommuBackend;
import io.actovisor.actors.vfio.VfioContainerActor;
import io.actovisor.actors.vm.VmActor;
import io.actovisor.actors.vm.VmTopology;
import io.actovisor.devices.guest.scripted.GuestLayout;
import io.actovisor.devices.guest.scripted.WorkloadProgram;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.FlatView;
import io.actovisor.memory.GuestAddress;
import io.actovisor.memory.GuestMemory;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.MemoryRegion;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.Optional;
import org.apache.pekko.actor.testkit.typed.javadsl.FishingOutcomes;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.eventstream.EventStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * Free page reporting from the scripted guest's driver through the virtio-balloon's reporting queue: the free blocks
 * it reports are discarded (their host memory is no longer resident) when no holder is attached, and skipped,
 * counted and named while a VFIO group holds guest RAM.
 */
class FreePageReportingTest {
    private static final long MIB = 1L << 20;
    private static final long RAM = 8 * MIB;
    private static final long BALLOON_BASE = 0xd0001000L;
    /** Free RAM above the 1 MiB work area at 1 MiB: three whole 2 MiB blocks. */
    private static final AddressRange FREE = AddressRange.of(2 * MIB, 6 * MIB);
    @RegisterExtension
    static final NativeTestKit KIT = new NativeTestKit();

    private static VmTopology topology(String name, HostMemory ram, boolean group) {
        List<MemoryRegion> regions = List.of(MemoryRegion.ram("ram", GuestAddress.ZERO, ram),
                MemoryRegion.mmio("balloon-mmio", AddressRange.of(BALLOON_BASE, 4096), "balloon"));
        List<VmTopology.Device> devices = List.of(new VmTopology.Device("balloon", c -> VirtioBalloonActor.create(
                c.guestMemory(), c.balloon().orElseThrow(), Optional.of(c.discardManager()), true,
                Duration.ofMillis(100)), VmTopology.Device.Role.VIRTIO_BALLOON));
        List<VmTopology.Container> containers = group ? List.of(new VmTopology.Container("c0",
                IommuBackend.model(65535), DiscardMode.INHIBIT, VfioContainerActor.DEFAULT_DISCARD_BLOCK_SIZE))
                : List.of();
        List<VmTopology.Group> groups = group ? List.of(new VmTopology.Group("g0", "c0", Optional.empty(), true))
                : List.of();
        return new VmTopology(name, List.of(ram), regions, Optional.of(BalloonSettings.DEFAULT), containers, groups,
                Optional.empty(), devices, Optional.of(new VmTopology.ScriptedGuest(
                        () -> new WorkloadProgram(Duration.ofMillis(50)), GuestLayout.of(MIB))));
    }

    /** Touch every page of the free RAM from the host side, so a discard shows in the resident size. */
    private static void touchFreeRam(HostMemory ram) {
        GuestMemory memory = GuestMemory.of(FlatView.of(List.of(MemoryRegion.ram("ram", GuestAddress.ZERO, ram))));
        byte[] ones = new byte[(int) FREE.size()];
        Arrays.fill(ones, (byte) 1);
        memory.write(new GuestAddress(FREE.base()), ones);
    }

    private static AddressRange hostRange(HostMemory ram) {
        return AddressRange.of(ram.base().value() + FREE.base(), FREE.size());
    }

    private static TestProbe<ActovisorEvent.GuestConsoleLine> console() {
        TestProbe<ActovisorEvent.GuestConsoleLine> console = KIT.kit().createTestProbe();
        KIT.kit().system().eventStream().tell(new EventStream.Subscribe<>(ActovisorEvent.GuestConsoleLine.class,
                console.ref()));
        return console;
    }

    private static void awaitLine(TestProbe<ActovisorEvent.GuestConsoleLine> console, String vm, String prefix) {
        console.fishForMessage(Duration.ofSeconds(30), "a console line of " + vm + " starting with " + prefix,
                line -> line.device().equals(vm) && line.line().startsWith(prefix) ? FishingOutcomes.complete()
                        : FishingOutcomes.continueAndIgnore());
    }

    private static DiscardState discardState(VmActor.Started started) {
        TestProbe<DiscardState> probe = KIT.kit().createTestProbe();
        started.components().discardManager().tell(new DiscardManager.GetState(probe.ref()));
        return probe.receiveMessage();
    }

    private static VmActor.Started startVm(ActorRef<VmActor.Command> vm) {
        TestProbe<VmActor.StartResult> result = KIT.kit().createTestProbe();
        vm.tell(new VmActor.Start(result.ref()));
        VmActor.StartResult r = result.receiveMessage(Duration.ofSeconds(30));
        assertTrue(r instanceof VmActor.Started, r.toString());
        return (VmActor.Started) r;
    }

    private static void shutDown(ActorRef<VmActor.Command> vm) {
        TestProbe<VmActor.ActionResult> actions = KIT.kit().createTestProbe();
        vm.tell(new VmActor.Shutdown(actions.ref()));
        actions.receiveMessage(Duration.ofSeconds(20));
        actions.expectTerminated(vm, Duration.ofSeconds(20));
    }

    @Test
    void reportedFreeBlocksAreDiscardedWithoutHoldersAndReportedAgainAfterADeflate() {
        HostMemory ram = HostMemory.anonymous("fpr-free-ram", RAM);
        touchFreeRam(ram);
        assertEquals(FREE.size(), ram.residentBytes(hostRange(ram)), "the host touched the free RAM");
        TestProbe<ActovisorEvent.GuestConsoleLine> console = console();
        ActorRef<VmActor.Command> vm = KIT.kit().spawn(VmActor.create(topology("fpr-free", ram, false)), "fpr-free");
        VmActor.Started started = startVm(vm);
        awaitLine(console, "fpr-free", "round 2:");
        DiscardState state = discardState(started);
        assertEquals(FREE.size(), state.reportedBytesDiscarded(), state.toString());
        assertEquals(0, state.reportedBytesSkipped());
        assertEquals(0, state.bytesDiscarded(), "reports are counted apart from the balloon's discards");
        assertEquals(0, ram.residentBytes(hostRange(ram)), "the reported blocks were given back to the host");

        // Inflate one block and deflate it: the block is free again and reported once more.
        TestProbe<BalloonActor.TargetResult> target = KIT.kit().createTestProbe();
        started.components().balloon().orElseThrow().tell(new BalloonActor.SetTarget(2 * MIB, target.ref()));
        target.receiveMessage();
        awaitLine(console, "fpr-free", "balloon: inflated 512 pages");
        started.components().balloon().orElseThrow().tell(new BalloonActor.SetTarget(0, target.ref()));
        target.receiveMessage();
        awaitLine(console, "fpr-free", "balloon: reported 1 free blocks");
        DiscardState after = discardState(started);
        assertEquals(FREE.size() + 2 * MIB, after.reportedBytesDiscarded(), after.toString());
        shutDown(vm);
    }

    @Test
    void aVfioGroupMakesReportsSkippedCountedAndNamed() {
        HostMemory ram = HostMemory.anonymous("fpr-held-ram", RAM);
        touchFreeRam(ram);
        TestProbe<ActovisorEvent.GuestConsoleLine> console = console();
        ActorRef<VmActor.Command> vm = KIT.kit().spawn(VmActor.create(topology("fpr-held", ram, true)), "fpr-held");
        VmActor.Started started = startVm(vm);
        awaitLine(console, "fpr-held", "round 2:");
        DiscardState state = discardState(started);
        assertEquals(0, state.reportedBytesDiscarded(), state.toString());
        assertEquals(FREE.size(), state.reportedBytesSkipped(), state.toString());
        assertEquals(1, state.reportsSkipped());
        assertTrue(state.lastReportSkipReason().contains("g0"), state.lastReportSkipReason());
        assertEquals(FREE.size(), ram.residentBytes(hostRange(ram)), "nothing was discarded under the group");
        shutDown(vm);
    }
}
