package io.actovisor.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.ConfigFactory;
import io.actovisor.kernel.uring.IoUring;
import io.actovisor.memory.sys.ProcessResources;
import io.actovisor.memory.testing.NativeRequirement;
import io.actovisor.demos.coherence.CoherenceScenario;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The seed's bug and its fix, end to end: the actor tree (address space, balloon, container on the io_uring
 * {@code pinned} backend, group) over real memory with real long-term pins, checked by the coherence audit.
 */
class CoherenceEndToEndTest {
    @BeforeAll
    static void requireIoUring() {
        NativeRequirement.require("io_uring", IoUring.unavailabilityCause());
    }

    private static List<Long> ballooned() {
        List<Long> pages = new ArrayList<>();
        for (long frame : CoherenceScenario.INFLATED) {
            pages.add(frame * 4096);
        }
        return pages;
    }

    @Test
    void withTheInhibitorTheDeviceReadsWhatTheCpuWrote() {
        ProcessResources before = ProcessResources.snapshot();
        long pinned = vmPinKib();
        CoherenceScenario.Outcome outcome = CoherenceScenario.run(ConfigFactory.load(), false);
        assertEquals(0, outcome.pagesDiscarded(), "an attached group inhibits the balloon");
        assertEquals(CoherenceScenario.INFLATED.length, outcome.pagesSkipped());
        assertEquals(CoherenceScenario.RAM_PAGES, outcome.report().pagesChecked());
        assertTrue(outcome.report().coherent(), outcome.report().toString());
        assertEquals('B', outcome.deviceByte(), "the device reads what the CPU wrote");
        assertEquals('B', outcome.cpuByte());
        assertNothingLeft(before, pinned);
    }

    @Test
    void withoutTheInhibitorExactlyTheDiscardedPagesGoStale() {
        ProcessResources before = ProcessResources.snapshot();
        long pinned = vmPinKib();
        CoherenceScenario.Outcome outcome = CoherenceScenario.run(ConfigFactory.load(), true);
        assertEquals(CoherenceScenario.INFLATED.length, outcome.pagesDiscarded());
        assertEquals(ballooned(), outcome.incoherentPages(), "exactly the discarded pages are incoherent");
        assertEquals('A', outcome.deviceByte(), "the device reads the stale, still-pinned page");
        assertEquals('B', outcome.cpuByte(), "the CPU reads its new page");
        if (!outcome.report().pfnMismatches().isEmpty()) {
            assertEquals(ballooned(), outcome.report().pfnMismatches(), "and their frames moved");
        }
        assertNothingLeft(before, pinned);
    }

    private static void assertNothingLeft(ProcessResources before, long pinnedKib) {
        ProcessResources after = ProcessResources.snapshot();
        assertTrue(after.nativeFdsOpenedSince(before).isEmpty(), "fds left: " + after.nativeFdsOpenedSince(before));
        assertEquals(List.of(), after.mappingsMentioning("io_uring"), "no io_uring ring left mapped");
        assertEquals(pinnedKib, vmPinKib(), "no page left pinned (VmPin)");
    }

    private static long vmPinKib() {
        return ProcessResources.statusKib("VmPin");
    }
}
