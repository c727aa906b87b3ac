package io.actovisor.actors.guest;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.actors.balloon.BalloonActor;
import io.actovisor.actors.balloon.BalloonSettings;
import io.actovisor.actors.balloon.VirtioBalloonActor;
import io.actovisor.actors.dma.DmaEngineActor;
import io.actovisor.actors.events.ActovisorEvent;
import io.actovisor.actors.testing.NativeTestKit;
import io.actovisor.actors.vfio.IommuBackend;
import io.actovisor.actors.vm.VmActor;
import io.actovisor.actors.vm.VmTopology;
import io.actovisor.devices.guest.scripted.GuestLayout;
import io.actovisor.devices.guest.scripted.GuestMachine;
import io.actovisor.devices.guest.scripted.GuestProgram;
import io.actovisor.devices.guest.scripted.WorkloadProgram;
import io.actovisor.devices.iommu.pinned.PinnedIommu;
import io.actovisor.kernel.uring.IoUring;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.GuestAddress;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.MemoryRegion;
import io.actovisor.memory.testing.NativeRequirement;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.function.Supplier;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.eventstream.EventStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * A VM whose guest is scripted: the default workload follows the balloon target and checksums rounds by CPU and by
 * DMA through the same devices the firmware guest drives; a program that throws stops only its guest.
 */
class ScriptedGuestVmTest {
    private static final long RAM = 4 << 20;
    private static final long DMA_BASE = 0xd0000000L;
    private static final long BALLOON_BASE = 0xd0001000L;
    @RegisterExtension
    static final NativeTestKit KIT = new NativeTestKit();

    /** 4 MiB of RAM, a balloon, a container with one group, the DMA engine behind it when {@code dma}. */
    static VmTopology topology(String name, IommuBackend backend, boolean dma, Supplier<GuestProgram> program) {
        HostMemory ram = HostMemory.anonymous(name + "-ram", RAM);
        List<MemoryRegion> regions = new ArrayList<>(List.of(MemoryRegion.ram("ram", GuestAddress.ZERO, ram),
                MemoryRegion.mmio("balloon-mmio", AddressRange.of(BALLOON_BASE, 4096), "balloon")));
        List<VmTopology.Device> devices = new ArrayList<>(List.of(new VmTopology.Device("balloon",
                c -> VirtioBalloonActor.create(c.guestMemory(), c.balloon().orElseThrow(), true, Duration.ofMillis(100)),
                VmTopology.Device.Role.VIRTIO_BALLOON)));
        if (dma) {
            regions.add(MemoryRegion.mmio("dma-mmio", AddressRange.of(DMA_BASE, 4096), "dma"));
            devices.add(new VmTopology.Device("dma", c -> DmaEngineActor.create(c.containers().get("c0"))));
        }
        return new VmTopology(name, List.of(ram), regions, Optional.of(BalloonSettings.DEFAULT),
                // The group is balloon-compatible: its container is on-demand, and the group takes its mode.
                List.of(new VmTopology.Container("c0", backend, io.actovisor.actors.discard.DiscardMode.ON_DEMAND,
                        io.actovisor.actors.vfio.VfioContainerActor.DEFAULT_DISCARD_BLOCK_SIZE)),
                List.of(new VmTopology.Group("g0", "c0", Optional.empty(), true)),
                Optional.empty(), devices, Optional.of(new VmTopology.ScriptedGuest(program,
                        GuestLayout.of(1 << 20))));
    }

    private static TestProbe<ActovisorEvent.GuestConsoleLine> console() {
        TestProbe<ActovisorEvent.GuestConsoleLine> console = KIT.kit().createTestProbe();
        KIT.kit().system().eventStream().tell(new EventStream.Subscribe<>(ActovisorEvent.GuestConsoleLine.class,
                console.ref()));
        return console;
    }

    private static String awaitLine(TestProbe<ActovisorEvent.GuestConsoleLine> console, String vm, String prefix) {
        return console.fishForMessage(Duration.ofSeconds(20), "a console line of " + vm + " starting with " + prefix,
                line -> line.device().equals(vm) && line.line().startsWith(prefix)
                        ? org.apache.pekko.actor.testkit.typed.javadsl.FishingOutcomes.complete()
                        : org.apache.pekko.actor.testkit.typed.javadsl.FishingOutcomes.continueAndIgnore()).get(0).line();
    }

    private static VmActor.Started startVm(ActorRef<VmActor.Command> vm) {
        TestProbe<VmActor.StartResult> started = KIT.kit().createTestProbe();
        vm.tell(new VmActor.Start(started.ref()));
        VmActor.StartResult result = started.receiveMessage(Duration.ofSeconds(20));
        assertTrue(result instanceof VmActor.Started, result.toString());
        return (VmActor.Started) result;
    }

    private static void shutDown(ActorRef<VmActor.Command> vm) {
        TestProbe<VmActor.ActionResult> actions = KIT.kit().createTestProbe();
        vm.tell(new VmActor.Shutdown(actions.ref()));
        actions.receiveMessage();
        actions.expectTerminated(vm, Duration.ofSeconds(10));
    }

    @Test
    void workloadFollowsTheBalloonTargetThroughTheVirtioBalloon() {
        TestProbe<ActovisorEvent.GuestConsoleLine> console = console();
        VmTopology topology = topology("scripted-balloon", IommuBackend.model(65535), false,
                () -> new WorkloadProgram(Duration.ofMillis(50)));
        ActorRef<VmActor.Command> vm = KIT.kit().spawn(VmActor.create(topology), "scripted-balloon");
        VmActor.Started started = startVm(vm);
        assertEquals("balloon: ready (stats on)", awaitLine(console, "scripted-balloon", "balloon:"));
        assertTrue(awaitLine(console, "scripted-balloon", "round 1:").startsWith(
                "round 1: pages 256 balloon 0 cpu "));

        TestProbe<BalloonActor.TargetResult> target = KIT.kit().createTestProbe();
        started.components().balloon().orElseThrow().tell(new BalloonActor.SetTarget(64 * 4096, target.ref()));
        target.receiveMessage();
        assertEquals("balloon: inflated 64 pages (now 64)", awaitLine(console, "scripted-balloon",
                "balloon: inflated"));
        // The 64 frames come from the free RAM above the work area (one whole 2 MiB block there): the work area stays.
        assertTrue(awaitLine(console, "scripted-balloon", "round").contains("pages 256 balloon 64"));
        TestProbe<BalloonActor.BalloonStatus> status = KIT.kit().createTestProbe();
        started.components().balloon().orElseThrow().tell(new BalloonActor.GetStatus(status.ref()));
        assertEquals(64 * 4096, status.receiveMessage().actualBytes(), "the balloon holds the frames the guest gave");

        TestProbe<VmActor.BalloonDevice> balloonDevice = KIT.kit().createTestProbe();
        vm.tell(new VmActor.GetBalloonDevice(balloonDevice.ref()));
        TestProbe<VirtioBalloonActor.Statistics> stats = KIT.kit().createTestProbe();
        balloonDevice.receiveMessage().device().orElseThrow().tell(new VirtioBalloonActor.GetStatistics(
                stats.ref()));
        VirtioBalloonActor.Statistics s = stats.receiveMessage();
        assertEquals(64, s.actualPages());
        assertEquals(0, s.eventFails());

        started.components().balloon().orElseThrow().tell(new BalloonActor.SetTarget(0, target.ref()));
        target.receiveMessage();
        assertEquals("balloon: deflated 64 pages (now 0)", awaitLine(console, "scripted-balloon",
                "balloon: deflated"));
        shutDown(vm);
    }

    @Test
    void deflateOnOomKeepsTheReserveWhenTheTargetAsksForEverything() {
        TestProbe<ActovisorEvent.GuestConsoleLine> console = console();
        ActorRef<VmActor.Command> vm = KIT.kit().spawn(VmActor.create(topology("scripted-oom",
                IommuBackend.model(65535),
                false, () -> new WorkloadProgram(Duration.ofMillis(50)))), "scripted-oom");
        VmActor.Started started = startVm(vm);
        awaitLine(console, "scripted-oom", "round 1:");
        TestProbe<BalloonActor.TargetResult> target = KIT.kit().createTestProbe();
        started.components().balloon().orElseThrow().tell(new BalloonActor.SetTarget(RAM, target.ref()));
        target.receiveMessage();
        assertEquals("balloon: target 1024 pages leaves no memory; deflate-on-oom keeps the balloon at "
                + (768 - WorkloadProgram.RESERVE_PAGES), awaitLine(console, "scripted-oom", "balloon: target"));
        // 512 free frames above the work area and 256 of it are balloonable; the reserve stays in the work area.
        assertTrue(awaitLine(console, "scripted-oom", "round").contains("pages " + WorkloadProgram.RESERVE_PAGES
                + " balloon " + (768 - WorkloadProgram.RESERVE_PAGES)));
        shutDown(vm);
    }

    @Test
    void cpuAndDmaChecksumsMatchThroughPinnedPages() {
        NativeRequirement.require("io_uring", IoUring.unavailabilityCause());
        TestProbe<ActovisorEvent.GuestConsoleLine> console = console();
        ActorRef<VmActor.Command> vm = KIT.kit().spawn(VmActor.create(topology("scripted-dma",
                IommuBackend.shared(PinnedIommu.BACKEND, () -> PinnedIommu.open(65535)), true,
                () -> new WorkloadProgram(Duration.ofMillis(50)))), "scripted-dma");
        startVm(vm);
        String round = awaitLine(console, "scripted-dma", "round 2:");
        assertTrue(round.matches("round 2: pages 256 balloon 0 cpu [0-9a-f]{16} dma [0-9a-f]{16} match"), round);
        String[] words = round.split(" ");
        assertEquals(words[7], words[9], "the CPU's and the device's checksums are printed equal");
        shutDown(vm);
    }

    @Test
    void aProgramThatThrowsStopsItsGuestNotTheVm() {
        GuestProgram failing = new GuestProgram() {
            @Override
            public String name() {
                return "failing";
            }

            @Override
            public CompletionStage<Void> boot(GuestMachine machine) {
                return CompletableFuture.completedFuture(null);
            }

            @Override
            public CompletionStage<Optional<Duration>> round(GuestMachine machine, long round) {
                if (round == 2) {
                    throw new IllegalStateException("the script gave up in round " + round);
                }
                return CompletableFuture.completedFuture(Optional.of(Duration.ZERO));
            }
        };
        ActorRef<VmActor.Command> vm = KIT.kit().spawn(VmActor.create(topology("scripted-fail",
                IommuBackend.model(65535),
                false, () -> failing)), "scripted-fail");
        startVm(vm);
        TestProbe<VmActor.GuestInfo> guest = KIT.kit().createTestProbe();
        VmActor.GuestInfo info = guest.awaitAssert(Duration.ofSeconds(10), () -> {
            vm.tell(new VmActor.GetGuest(guest.ref()));
            VmActor.GuestInfo i = guest.receiveMessage();
            assertEquals(VmActor.GuestState.FAILED, i.state());
            return i;
        });
        assertEquals(new VmActor.GuestInfo("scripted", "failing", VmActor.GuestState.FAILED,
                Optional.of("IllegalStateException: the script gave up in round 2")), info);
        TestProbe<VmActor.VmInfo> vmInfo = KIT.kit().createTestProbe();
        vm.tell(new VmActor.GetInfo(vmInfo.ref()));
        assertEquals(VmActor.State.RUNNING, vmInfo.receiveMessage().state(), "the VM keeps running");
        shutDown(vm);
    }
}
