package io.actovisor.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.ConfigFactory;
import io.actovisor.actors.balloon.BalloonActor;
import io.actovisor.actors.balloon.BalloonSettings;
import io.actovisor.actors.events.ActovisorEvent;
import io.actovisor.actors.vm.VmActor;
import io.actovisor.actors.vm.VmTopology;
import io.actovisor.config.VmSpec;
import io.actovisor.config.VmSpecParser;
import io.actovisor.kernel.kvm.Kvm;
import io.actovisor.kernel.uring.IoUring;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.sys.ProcessResources;
import io.actovisor.memory.testing.NativeRequirement;
import io.actovisor.memory.testing.TestTimeouts;
import io.actovisor.vmm.runtime.VmBuilder;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.eventstream.EventStream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * The seed's scenario inside a real guest on KVM: the guest's virtio-balloon driver gives all its free RAM (the
 * 13 MiB above its work area) and then pages of its work area up, the host's balloon decides whether to discard them, and the guest's DMA engine (behind a VFIO group on the
 * {@code pinned} backend) checksums the same memory the CPU checksums.
 */
@Tag("kvm")
class GuestBalloonTest {
    private static final long MIB = 1 << 20;
    /** Pages of the work area the tests balloon. */
    private static final int PAGES = 256;
    /** The guest's free RAM above its work area ([3 MiB, 16 MiB)), which it gives to the balloon first. */
    private static final int FREE_PAGES = (int) (13 * MIB / 4096);
    /** A target that reaches {@link #PAGES} pages into the work area. */
    private static final int TARGET = FREE_PAGES + PAGES;
    private static ActorTestKit kit;
    private static int vms;

    /** Per test, so that a machine without KVM reports each test skipped with the reason, not a class of none. */
    @BeforeEach
    void start() {
        NativeRequirement.requireKvm(Kvm.unavailabilityCause());
        NativeRequirement.require("io_uring", IoUring.unavailabilityCause());
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

    private static String vm(boolean passthrough, boolean unsafe) {
        String mmio = """
                    { name = dma-mmio, kind = mmio, base = "0xd0000000", size = 4 KiB, device = dma }
                """;
        return """
                actovisor.vm {
                  name = balloon-test
                  memory = [
                    { name = ram, base = 0, size = 16 MiB }
                    { name = balloon-mmio, kind = mmio, base = "0xd0001000", size = 4 KiB, device = balloon }
                """ + (passthrough ? mmio : "") + """
                  ]
                  guest { program = workload, workload-mib = 2 }
                  balloon { enabled = true, stats-polling-interval = 200ms, unsafe-ignore-inhibitor = %s }
                """.formatted(unsafe) + (passthrough ? """
                  vfio.containers = [ { name = passthrough, backend = pinned, groups = [ { id = dma0 } ] } ]
                  devices.dma { enabled = true, group = dma0, mmio-base = "0xd0000000" }
                """ : "") + """
                  api.enabled = false
                }
                """;
    }

    /** A running guest and its console. */
    private static final class Guest implements AutoCloseable {
        final VmTopology topology;
        final ActorRef<VmActor.Command> vm;
        final VmActor.Components components;
        final TestProbe<ActovisorEvent.GuestConsoleLine> console = kit.createTestProbe();
        final List<String> lines = new ArrayList<>();

        Guest(String hocon) {
            kit.system().eventStream().tell(new EventStream.Subscribe<>(ActovisorEvent.GuestConsoleLine.class,
                    console.ref()));
            VmSpec spec = VmSpecParser.parse(ConfigFactory.parseString(hocon));
            topology = VmBuilder.topology(spec, BalloonSettings.DEFAULT.withUnsafeIgnoreInhibitor(
                    spec.balloon().unsafeIgnoreInhibitor()), 50);
            vm = kit.spawn(VmActor.create(topology), "guest-" + vms++);
            TestProbe<VmActor.StartResult> started = kit.createTestProbe();
            vm.tell(new VmActor.Start(started.ref()));
            components = ((VmActor.Started) started.receiveMessage(Duration.ofSeconds(30))).components();
        }

        /** Wait for a console line matching {@code regex}; returns its matcher. */
        Matcher await(String regex) {
            Pattern pattern = Pattern.compile(regex);
            long deadline = System.nanoTime() + TestTimeouts.scaled(Duration.ofSeconds(60)).toNanos();
            while (System.nanoTime() < deadline) {
                String line = console.receiveMessage(Duration.ofSeconds(60)).line();
                lines.add(line);
                Matcher m = pattern.matcher(line);
                if (m.find()) {
                    return m;
                }
            }
            throw new AssertionError("no console line matching " + regex + "; console: " + lines);
        }

        void target(long pages) {
            TestProbe<BalloonActor.TargetResult> set = kit.createTestProbe();
            components.balloon().orElseThrow().tell(new BalloonActor.SetTarget(pages * 4096, set.ref()));
            assertInstanceOf(BalloonActor.TargetSet.class, set.receiveMessage());
        }

        BalloonActor.BalloonStatus balloon() {
            TestProbe<BalloonActor.BalloonStatus> probe = kit.createTestProbe();
            components.balloon().orElseThrow().tell(new BalloonActor.GetStatus(probe.ref()));
            return probe.receiveMessage();
        }

        HostMemory ram() {
            return topology.memory().get(0);
        }

        @Override
        public void close() {
            TestProbe<VmActor.ActionResult> done = kit.createTestProbe();
            vm.tell(new VmActor.Shutdown(done.ref()));
            done.expectTerminated(vm, Duration.ofSeconds(30));
            assertTrue(ram().isClosed());
        }
    }

    @Test
    void withTheGroupAttachedInflatingDiscardsNothingAndDmaAlwaysMatchesTheCpu() {
        try (Guest guest = new Guest(vm(true, false))) {
            guest.await("round 2: pages 512 balloon 0 cpu (\\w+) dma \\1 match");
            guest.target(TARGET);
            guest.await("balloon: inflated " + TARGET + " pages");
            guest.await("pages 256 balloon " + TARGET + " cpu (\\w+) dma \\1 match");
            BalloonActor.BalloonStatus status = guest.balloon();
            assertEquals(0, status.pagesDiscarded(), "an attached group inhibits the discard");
            assertEquals(TARGET, status.pagesSkipped());
            assertEquals(TARGET * 4096L, status.actualBytes());
            guest.target(0);
            guest.await("balloon: deflated " + TARGET + " pages");
            guest.await("pages 512 balloon 0 cpu (\\w+) dma \\1 match");
            assertFalse(guest.lines.stream().anyMatch(l -> l.contains("MISMATCH") || l.contains("differ")),
                    guest.lines.toString());
        }
    }

    @Test
    void withTheInhibitorIgnoredExactlyTheDiscardedPagesGoStaleForTheDevice() {
        try (Guest guest = new Guest(vm(true, true))) {
            guest.await("round 2: pages 512 balloon 0 cpu (\\w+) dma \\1 match");
            guest.target(TARGET);
            guest.await("balloon: inflated " + TARGET + " pages");
            assertEquals(TARGET, guest.balloon().pagesDiscarded(), "the unsafe setting discards pinned pages");
            guest.target(0);
            guest.await("balloon: deflated " + TARGET + " pages");
            guest.await("pages 512 balloon 0 cpu \\w+ dma \\w+ MISMATCH");
            Matcher first = guest.await("page (0x\\w+) differs");
            assertEquals("0x100000", first.group(1), "the first ballooned page of the work area");
            Matcher count = guest.await("round \\d+: (\\d+) pages differ");
            assertEquals(PAGES, Integer.parseInt(count.group(1)),
                    "exactly the discarded pages: the device reads the old pinned pages, the CPU its new ones");
        }
    }

    @Test
    void withoutVfioInflatingReturnsMemoryAndDeflatingGivesItBack() {
        ProcessResources before = ProcessResources.snapshot();
        try (Guest guest = new Guest(vm(false, false))) {
            guest.await("round 2: pages 512 balloon 0");
            HostMemory ram = guest.ram();
            long work = MIB;
            io.actovisor.memory.AddressRange workArea = io.actovisor.memory.AddressRange.of(ram.base().value() + work,
                    2 * MIB);
            assertEquals(2 * MIB, ram.residentBytes(workArea), "the guest touched its whole work area");
            guest.target(TARGET);
            guest.await("balloon: inflated " + TARGET + " pages");
            guest.await("pages 256 balloon " + TARGET);
            assertEquals(TARGET, guest.balloon().pagesDiscarded());
            assertEquals(MIB, ram.residentBytes(workArea), "inflating 1 MiB gave 1 MiB back to the host");
            guest.target(0);
            guest.await("balloon: deflated " + TARGET + " pages");
            guest.await("pages 512 balloon 0");
            assertEquals(2 * MIB, ram.residentBytes(workArea), "after deflating, the guest uses the pages again");
        }
        assertTrue(ProcessResources.snapshot().nativeFdsOpenedSince(before).isEmpty(), "no KVM or memfd fd left");
    }
}
