package io.actovisor.vmm.runtime;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.actors.balloon.BalloonSettings;
import io.actovisor.actors.events.ActovisorEvent;
import io.actovisor.actors.vm.VmActor;
import io.actovisor.actors.vm.VmTopology;
import io.actovisor.config.GuestKind;
import io.actovisor.config.VmSpec;
import io.actovisor.config.VmSpecParser;
import io.actovisor.kernel.uring.IoUring;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.sys.Posix;
import io.actovisor.memory.testing.NativeRequirement;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import java.util.Optional;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.FishingOutcomes;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.eventstream.EventStream;
import org.junit.jupiter.api.Test;

/**
 * {@code guest.kind}: which guest runs on a host with and without KVM, the refusal of {@code firmware} without it,
 * and docs/examples/scripted.conf running its scripted guest to matching CPU and DMA checksums.
 */
class ScriptedGuestRunTest {
    private static final Optional<String> NO_KVM = Optional.of("test: no /dev/kvm");

    @Test
    void autoPicksFirmwareWithKvmAndTheScriptedGuestWithoutSayingWhy() {
        assertEquals(new GuestChoice(GuestKind.FIRMWARE, "guest.kind = auto: running the firmware guest on KVM"),
                GuestChoice.choose(GuestKind.AUTO, Optional.empty()));
        assertEquals(new GuestChoice(GuestKind.SCRIPTED, "guest.kind = auto: running the scripted guest, because KVM "
                + "is unavailable (test: no /dev/kvm)"), GuestChoice.choose(GuestKind.AUTO, NO_KVM));
        assertEquals(GuestKind.SCRIPTED, GuestChoice.choose(GuestKind.SCRIPTED, Optional.empty()).kind());
    }

    @Test
    void firmwareWithoutKvmIsRefusedWithTheReason() {
        GuestChoice.GuestUnavailableException e = assertThrows(GuestChoice.GuestUnavailableException.class,
                () -> GuestChoice.choose(GuestKind.FIRMWARE, NO_KVM));
        assertEquals("guest.kind = firmware needs KVM, which is unavailable: test: no /dev/kvm; set guest.kind = "
                + "scripted (or auto) to run without KVM", e.getMessage());
    }

    @Test
    void linuxRunsOnKvmAndIsRefusedWithoutIt() {
        assertEquals(new GuestChoice(GuestKind.LINUX, "guest.kind = linux: running a Linux kernel on KVM"),
                GuestChoice.choose(GuestKind.LINUX, Optional.empty()));
        GuestChoice.GuestUnavailableException e = assertThrows(GuestChoice.GuestUnavailableException.class,
                () -> GuestChoice.choose(GuestKind.LINUX, NO_KVM));
        assertEquals("guest.kind = linux needs KVM, which is unavailable: test: no /dev/kvm; set guest.kind = "
                + "scripted (or auto) to run without KVM", e.getMessage());
    }

    @Test
    void theEnvironmentCanHideKvm() {
        assertEquals(Optional.of("/dev/kvm treated as missing because ACTOVISOR_KVM=none (ENOENT)"),
                GuestChoice.kvmUnavailability(Map.of("ACTOVISOR_KVM", "none")));
    }

    @Test
    void theDefaultVmWithoutKvmBuildsTheScriptedGuest() {
        NativeRequirement.require("host memory (mmap, madvise)", Posix.unavailabilityCause());
        VmTopology topology = VmBuilder.topology(VmSpecParser.defaultVm(), BalloonSettings.DEFAULT, 1000, NO_KVM);
        try {
            assertTrue(topology.guest().isEmpty(), "no firmware guest");
            assertEquals(2L << 20, topology.scripted().orElseThrow().layout().workBytes());
        } finally {
            topology.memory().forEach(HostMemory::close);
        }
    }

    @Test
    void aFirmwareDefinitionWithoutKvmAllocatesNothing() {
        VmSpec firmware = VmSpecParser.parseString("actovisor.vm { name = fw, guest.kind = firmware }");
        assertThrows(GuestChoice.GuestUnavailableException.class,
                () -> VmBuilder.topology(firmware, BalloonSettings.DEFAULT, 1000, NO_KVM));
        VmSpec memtest = VmSpecParser.parseString("actovisor.vm { name = mt, guest { kind = scripted, program = "
                + "memtest } }");
        assertEquals("the scripted guest runs only the program 'workload', not guest.program = memtest (a firmware "
                + "program, which needs KVM)", assertThrows(GuestChoice.GuestUnavailableException.class,
                        () -> VmBuilder.topology(memtest, BalloonSettings.DEFAULT, 1000, Optional.empty()))
                        .getMessage());
    }

    @Test
    void theScriptedExampleRunsRoundsWhoseChecksumsMatch() {
        NativeRequirement.require("io_uring (the example's pinned container)", IoUring.unavailabilityCause());
        Path example = Path.of(System.getenv().getOrDefault("ACTOVISOR_PROJECT_ROOT", "..")).resolve(
                "docs/examples/scripted.conf");
        VmSpec spec = VmSpecParser.parseFile(example);
        assertEquals(GuestKind.SCRIPTED, spec.guest().kind());
        ActorTestKit kit = ActorTestKit.create();
        try {
            TestProbe<ActovisorEvent.GuestConsoleLine> console = kit.createTestProbe();
            kit.system().eventStream().tell(new EventStream.Subscribe<>(ActovisorEvent.GuestConsoleLine.class,
                    console.ref()));
            VmTopology topology = VmBuilder.topology(spec, BalloonSettings.DEFAULT, 50, Optional.empty());
            ActorRef<VmActor.Command> vm = kit.spawn(VmActor.create(topology), "scripted");
            TestProbe<VmActor.StartResult> started = kit.createTestProbe();
            vm.tell(new VmActor.Start(started.ref()));
            assertTrue(started.receiveMessage(Duration.ofSeconds(30)) instanceof VmActor.Started);
            String round = console.fishForMessage(Duration.ofSeconds(30), "round 2", line -> line.line().startsWith(
                    "round 2:") ? FishingOutcomes.complete() : FishingOutcomes.continueAndIgnore()).get(0).line();
            assertTrue(round.matches("round 2: pages 512 balloon 0 cpu ([0-9a-f]{16}) dma \\1 match"), round);
            TestProbe<VmActor.GuestInfo> guest = kit.createTestProbe();
            vm.tell(new VmActor.GetGuest(guest.ref()));
            assertEquals(new VmActor.GuestInfo("scripted", "workload", VmActor.GuestState.RUNNING, Optional.empty()),
                    guest.receiveMessage());
            TestProbe<VmActor.ActionResult> actions = kit.createTestProbe();
            vm.tell(new VmActor.Shutdown(actions.ref()));
            actions.expectTerminated(vm, Duration.ofSeconds(10));
            assertTrue(topology.memory().stream().allMatch(HostMemory::isClosed));
        } finally {
            kit.shutdownTestKit();
        }
    }
}
