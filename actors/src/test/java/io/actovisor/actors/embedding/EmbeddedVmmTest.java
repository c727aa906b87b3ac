package io.actovisor.actors.embedding;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.actors.balloon.BalloonActor;
import io.actovisor.actors.events.ActovisorEvent;
import io.actovisor.actors.kvm.VcpuHandle;
import io.actovisor.kernel.kvm.Kvm;
import io.actovisor.kernel.uring.IoUring;
import io.actovisor.memory.sys.ProcessResources;
import io.actovisor.memory.testing.NativeRequirement;
import java.time.Duration;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.FishingOutcomes;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * The embedding example of docs/embedding.md runs the firmware's workload on KVM: the device's DMA checksum matches
 * the CPU's before and after the balloon takes 1 MiB, and nothing stays pinned once it is closed.
 */
@Tag("kvm")
class EmbeddedVmmTest {
    private static final Pattern ROUND =
            Pattern.compile("round \\d+: pages \\d+ balloon (\\d+) cpu \\w+ dma \\w+ (\\w+)");
    private static final Duration WAIT = Duration.ofSeconds(60);
    private static ActorTestKit kit;

    @BeforeAll
    static void start() {
        kit = ActorTestKit.create();
    }

    @AfterAll
    static void stop() {
        kit.shutdownTestKit();
    }

    /** Wait for a round whose balloon holds {@code pages}; any round whose checksums differ fails the test. */
    private static void awaitCoherentRound(TestProbe<ActovisorEvent.GuestConsoleLine> console, long pages) {
        console.fishForMessage(WAIT, event -> {
            Matcher round = ROUND.matcher(event.line());
            if (!round.find()) {
                return FishingOutcomes.continueAndIgnore();
            }
            if (!round.group(2).equals("match")) {
                return FishingOutcomes.fail("device and CPU disagree: " + event.line());
            }
            return Long.parseLong(round.group(1)) == pages ? FishingOutcomes.complete()
                    : FishingOutcomes.continueAndIgnore();
        });
    }

    @Test
    void theVmmBuiltFromTheActorsRunsTheFirmwareWithABalloonAndCoherentDma() {
        NativeRequirement.requireKvm(Kvm.unavailabilityCause());
        NativeRequirement.require("io_uring (the pinned backend)", IoUring.unavailabilityCause());
        long pinnedBefore = ProcessResources.statusKib("VmPin");
        TestProbe<VcpuHandle.Event> vcpu = kit.createTestProbe();
        TestProbe<ActovisorEvent.GuestConsoleLine> console = kit.createTestProbe();
        try (EmbeddedVmm vmm = new EmbeddedVmm(vcpu.ref())) {
            vmm.subscribe(ActovisorEvent.GuestConsoleLine.class, console.ref());
            awaitCoherentRound(console, 0);
            // One 2 MiB block: the firmware's driver negotiates MUST_TELL_HOST and gives whole free blocks first, so
            // the discard manager has the pinned container unmap and unpin the block, then the balloon discards it.
            assertInstanceOf(BalloonActor.TargetSet.class, vmm.setBalloonTarget(2 << 20));
            awaitCoherentRound(console, 512);
            BalloonActor.BalloonStatus status = vmm.balloonStatus();
            assertEquals(2 << 20, status.actualBytes(), status.toString());
            assertEquals(512, status.pagesDiscarded(), status.toString());
            assertEquals(0, status.pagesSkipped(), status.toString());
            vcpu.expectNoMessage(Duration.ofMillis(100));
        }
        assertEquals(pinnedBefore, ProcessResources.statusKib("VmPin"), "the container unpinned guest RAM");
    }
}
