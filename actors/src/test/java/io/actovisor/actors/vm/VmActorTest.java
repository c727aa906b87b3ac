package io.actovisor.actors.vm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.actors.balloon.BalloonActor;
import io.actovisor.actors.balloon.BalloonSettings;
import io.actovisor.actors.discard.DiscardManager;
import io.actovisor.actors.discard.DiscardState;
import io.actovisor.actors.testing.NativeTestKit;
import io.actovisor.actors.vfio.IommuBackend;
import io.actovisor.actors.vfio.VfioContainerActor;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.GuestAddress;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.MemoryRegion;
import io.actovisor.memory.sys.ProcessResources;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/** A VM builds its tree, runs, and tears it down; a VM that cannot start leaves nothing behind. */
class VmActorTest {
    @RegisterExtension
    static final NativeTestKit KIT = new NativeTestKit();

    private static VmTopology topology(String name, HostMemory ram, IommuBackend backend) {
        return new VmTopology(name, List.of(ram), List.of(MemoryRegion.ram("ram", GuestAddress.ZERO, ram)),
                Optional.of(BalloonSettings.DEFAULT), List.of(new VmTopology.Container("c0", backend)),
                List.of(new VmTopology.Group("7", "c0", false, true), new VmTopology.Group("8", "c0", false, false)));
    }

    @Test
    void startsRunsAndShutsDownReleasingItsMemory() {
        HostMemory ram = HostMemory.anonymous("vm-ram", 1 << 20);
        ActorRef<VmActor.Command> vm = KIT.kit().spawn(VmActor.create(topology("vm1", ram, IommuBackend.model(65535))),
                "vm1");
        TestProbe<VmActor.StartResult> started = KIT.kit().createTestProbe();
        vm.tell(new VmActor.Start(started.ref()));
        VmActor.Started ok = (VmActor.Started) started.receiveMessage(Duration.ofSeconds(10));

        TestProbe<VfioContainerActor.State> container = KIT.kit().createTestProbe();
        ok.components().containers().get("c0").tell(new VfioContainerActor.GetState(container.ref()));
        VfioContainerActor.State state = container.receiveMessage();
        assertEquals(List.of("7"), state.groups(), "only the group marked attach-at-start is attached");
        assertEquals(List.of(AddressRange.of(0, 1 << 20)), state.mappings().stream().map(m -> m.iova()).toList());
        TestProbe<BalloonActor.BalloonStatus> balloon = KIT.kit().createTestProbe();
        ok.components().balloon().orElseThrow().tell(new BalloonActor.GetStatus(balloon.ref()));
        assertEquals(1, balloon.receiveMessage().inhibitors());

        TestProbe<VmActor.ActionResult> actions = KIT.kit().createTestProbe();
        vm.tell(new VmActor.Resume(actions.ref()));
        assertInstanceOf(VmActor.ActionRefused.class, actions.receiveMessage());
        vm.tell(new VmActor.Pause(actions.ref()));
        assertEquals(new VmActor.ActionDone(VmActor.State.PAUSED), actions.receiveMessage());
        vm.tell(new VmActor.Resume(actions.ref()));
        assertEquals(new VmActor.ActionDone(VmActor.State.RUNNING), actions.receiveMessage());
        vm.tell(new VmActor.Shutdown(actions.ref()));
        actions.receiveMessage();
        actions.expectTerminated(vm, Duration.ofSeconds(10));
        assertTrue(ram.isClosed(), "the VM closed its memory after its children stopped");
    }

    @Test
    void aVmWithoutABalloonCountsItsGroupsInItsDiscardManager() {
        HostMemory ram = HostMemory.anonymous("vm-noballoon", 1 << 20);
        ActorRef<VmActor.Command> vm = KIT.kit().spawn(VmActor.create(new VmTopology("vm4", List.of(ram),
                List.of(MemoryRegion.ram("ram", GuestAddress.ZERO, ram)), Optional.empty(),
                List.of(new VmTopology.Container("c0", IommuBackend.model(65535))),
                List.of(new VmTopology.Group("7", "c0", false, true)))), "vm4");
        TestProbe<VmActor.StartResult> started = KIT.kit().createTestProbe();
        vm.tell(new VmActor.Start(started.ref()));
        VmActor.Started ok = (VmActor.Started) started.receiveMessage(Duration.ofSeconds(10));
        assertTrue(ok.components().balloon().isEmpty(), "no stand-in balloon");
        TestProbe<DiscardState> discard = KIT.kit().createTestProbe();
        ok.components().discardManager().tell(new DiscardManager.GetState(discard.ref()));
        DiscardState state = discard.receiveMessage();
        assertEquals(1, state.uncoordinatedHolders());
        assertEquals(List.of("vfio-group:7"), state.holderNames());
        TestProbe<VmActor.ActionResult> actions = KIT.kit().createTestProbe();
        vm.tell(new VmActor.Shutdown(actions.ref()));
        actions.receiveMessage();
        actions.expectTerminated(vm, Duration.ofSeconds(10));
        assertTrue(ram.isClosed());
    }

    @Test
    void aVmThatCannotStartLeavesNothingBehind() {
        ProcessResources before = ProcessResources.snapshot();
        // memfd-backed, so its mapping is named in /proc/self/maps and cannot be confused with a reused range.
        HostMemory ram = HostMemory.shared("actovisor-doomed-ram", 1 << 20);
        assertEquals(1, ProcessResources.snapshot().mappingsMentioning("actovisor-doomed-ram").size());
        IommuBackend refusing = IommuBackend.model(0);
        ActorRef<VmActor.Command> vm = KIT.kit().spawn(VmActor.create(topology("vm2", ram, refusing)), "vm2");
        TestProbe<VmActor.StartResult> started = KIT.kit().createTestProbe();
        vm.tell(new VmActor.Start(started.ref()));
        VmActor.StartFailed failed = (VmActor.StartFailed) started.receiveMessage(Duration.ofSeconds(10));
        assertTrue(failed.reason().contains("VFIO group 7"), failed.reason());
        assertTrue(failed.reason().contains("max-mappings must be at least 1, was 0"), failed.reason());
        started.expectTerminated(vm, Duration.ofSeconds(10));
        assertTrue(ram.isClosed());
        assertEquals(List.of(), ProcessResources.snapshot().mappingsMentioning("actovisor-doomed-ram"));
        assertTrue(ProcessResources.snapshot().nativeFdsOpenedSince(before).isEmpty(), "no fd left open");
    }

    @Test
    void aVfioType1ContainerWithoutVfioFailsTheStartWithTheKernelsReason() {
        org.junit.jupiter.api.Assumptions.assumeFalse(java.nio.file.Files.exists(java.nio.file.Path.of("/dev/vfio/5")),
                "this host has /dev/vfio/5; the failure path needs a host without it");
        ProcessResources before = ProcessResources.snapshot();
        HostMemory ram = HostMemory.anonymous("vfio-ram", 1 << 20);
        ActorRef<VmActor.Command> vm = KIT.kit().spawn(VmActor.create(new VmTopology("vm3", List.of(ram),
                List.of(MemoryRegion.ram("ram", GuestAddress.ZERO, ram)), Optional.of(BalloonSettings.DEFAULT),
                List.of(new VmTopology.Container("c0", IommuBackend.vfioType1())),
                List.of(new VmTopology.Group("5", "c0", false, true)))), "vm3");
        TestProbe<VmActor.StartResult> started = KIT.kit().createTestProbe();
        vm.tell(new VmActor.Start(started.ref()));
        VmActor.StartFailed failed = (VmActor.StartFailed) started.receiveMessage(Duration.ofSeconds(10));
        assertTrue(failed.reason().contains("group 5") && failed.reason().contains("vfio-type1"), failed.reason());
        started.expectTerminated(vm, Duration.ofSeconds(10));
        assertTrue(ram.isClosed());
        assertTrue(ProcessResources.snapshot().nativeFdsOpenedSince(before).isEmpty(), "no fd left open");
    }
}
