package io.actovisor.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.actors.balloon.BalloonActor;
import io.actovisor.actors.balloon.BalloonSettings;
import io.actovisor.actors.discard.DiscardManager;
import io.actovisor.actors.discard.DiscardState;
import io.actovisor.actors.events.ActovisorEvent;
import io.actovisor.actors.vm.VmActor;
import io.actovisor.actors.vm.VmTopology;
import io.actovisor.config.VmSpec;
import io.actovisor.config.VmSpecParser;
import io.actovisor.kernel.kvm.Kvm;
import io.actovisor.kernel.uring.IoUring;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.testing.NativeRequirement;
import io.actovisor.memory.testing.TestTimeouts;
import io.actovisor.vmm.runtime.VmBuilder;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Pattern;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.eventstream.EventStream;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * Issue 16, 6(d): {@code docs/examples/coordinated.conf} (the default VM with {@code discard = coordinated} on its
 * pinned container) on KVM. The firmware guest negotiates MUST_TELL_HOST and inflates whole free 2 MiB blocks; the
 * container unmaps and unpins each block before it is discarded, so the VM's resident memory drops by the balloon
 * and comes back on deflate (the container maps and pins the blocks again), while every DMA round still matches.
 */
@Tag("kvm")
class CoordinatedGuestBalloonTest {
    private static final long MIB = 1L << 20;
    private static final long BALLOON = 8 * MIB;

    @Test
    void theCoordinatedExampleGivesWholeBlocksBackAndTakesThemAgainWhileDmaMatches() {
        Path example = Path.of(System.getenv().getOrDefault("ACTOVISOR_PROJECT_ROOT", "..")).resolve(
                "docs/examples/coordinated.conf");
        VmSpec spec = VmSpecParser.parseFile(example);
        assertEquals(VmSpec.Discard.COORDINATED, spec.containers().get(0).discard());
        assertEquals(VmSpec.Backend.PINNED, spec.containers().get(0).backend());
        NativeRequirement.requireKvm(Kvm.unavailabilityCause());
        NativeRequirement.require("io_uring (the example's pinned container)", IoUring.unavailabilityCause());

        ActorTestKit kit = ActorTestKit.create();
        List<String> lines = new ArrayList<>();
        try {
            TestProbe<ActovisorEvent.GuestConsoleLine> console = kit.createTestProbe();
            kit.system().eventStream().tell(new EventStream.Subscribe<>(ActovisorEvent.GuestConsoleLine.class,
                    console.ref()));
            VmTopology topology = VmBuilder.topology(spec, BalloonSettings.DEFAULT, 50);
            ActorRef<VmActor.Command> vm = kit.spawn(VmActor.create(topology), "coordinated");
            TestProbe<VmActor.StartResult> started = kit.createTestProbe();
            vm.tell(new VmActor.Start(started.ref()));
            VmActor.Components components = ((VmActor.Started) started.receiveMessage(Duration.ofSeconds(30)))
                    .components();
            HostMemory ram = topology.memory().get(0);
            AddressRange all = AddressRange.of(ram.base().value(), ram.size());
            // The guest gives its top free blocks first: the last 8 MiB of RAM.
            AddressRange ballooned = AddressRange.of(ram.base().value() + ram.size() - BALLOON, BALLOON);

            await(console, lines, "round 2: pages 512 balloon 0 cpu (\\w+) dma \\1 match");
            long residentBefore = ram.residentBytes(all);
            assertEquals(BALLOON, ram.residentBytes(ballooned), "the container pinned (so populated) all of RAM");

            target(kit, components, BALLOON);
            await(console, lines, "balloon: inflated 2048 pages");
            await(console, lines, "pages 512 balloon 2048 cpu (\\w+) dma \\1 match");
            DiscardState inflated = state(kit, components);
            assertTrue(inflated.guestTellsHost(), inflated.toString());
            assertEquals(4, inflated.blocksUnmapped(), "four whole 2 MiB blocks unmapped, then discarded");
            assertEquals(BALLOON, inflated.bytesDiscarded());
            assertEquals(0, inflated.bytesHeld(), "whole blocks: nothing waits for a block to complete");
            long residentInflated = ram.residentBytes(all);
            assertEquals(0, ram.residentBytes(ballooned), "the discarded blocks are gone from the host");
            assertTrue(residentBefore - residentInflated >= BALLOON, "resident " + residentBefore + " -> "
                    + residentInflated + " bytes");

            target(kit, components, 0);
            await(console, lines, "balloon: deflated 2048 pages");
            await(console, lines, "pages 512 balloon 0 cpu (\\w+) dma \\1 match");
            DiscardState deflated = state(kit, components);
            assertEquals(0, deflated.blocksUnmapped(), deflated.toString());
            assertEquals(BALLOON, ram.residentBytes(ballooned), "mapped (pinned) again before the guest was told");
            assertTrue(ram.residentBytes(all) - residentInflated >= BALLOON);
            assertFalse(lines.stream().anyMatch(l -> l.contains("MISMATCH") || l.contains("differ")
                    || l.contains("dma error")), lines.toString());
            System.out.printf("coordinated.conf: resident %d -> %d -> %d bytes; blocks unmapped %d%n",
                    residentBefore, residentInflated, ram.residentBytes(all), inflated.blocksUnmapped());

            TestProbe<VmActor.ActionResult> done = kit.createTestProbe();
            vm.tell(new VmActor.Shutdown(done.ref()));
            done.expectTerminated(vm, Duration.ofSeconds(30));
            assertTrue(ram.isClosed());
        } finally {
            kit.shutdownTestKit();
        }
    }

    private static void await(TestProbe<ActovisorEvent.GuestConsoleLine> console, List<String> lines, String regex) {
        Pattern pattern = Pattern.compile(regex);
        long deadline = System.nanoTime() + TestTimeouts.scaled(Duration.ofSeconds(90)).toNanos();
        while (System.nanoTime() < deadline) {
            String line = console.receiveMessage(Duration.ofSeconds(90)).line();
            lines.add(line);
            if (pattern.matcher(line).find()) {
                return;
            }
        }
        throw new AssertionError("no console line matching " + regex + "; console: " + lines);
    }

    private static void target(ActorTestKit kit, VmActor.Components components, long bytes) {
        TestProbe<BalloonActor.TargetResult> set = kit.createTestProbe();
        components.balloon().orElseThrow().tell(new BalloonActor.SetTarget(bytes, set.ref()));
        assertInstanceOf(BalloonActor.TargetSet.class, set.receiveMessage());
    }

    private static DiscardState state(ActorTestKit kit, VmActor.Components components) {
        TestProbe<DiscardState> probe = kit.createTestProbe();
        components.discardManager().tell(new DiscardManager.GetState(probe.ref()));
        return probe.receiveMessage();
    }
}
