package io.actovisor.demos.coherence;

import com.typesafe.config.Config;
import io.actovisor.kernel.uring.IoUring;
import java.io.PrintStream;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * {@code ./actovisor coherence-demo}: the three scenarios of {@link CoherenceScenario} on the {@code pinned} backend
 * (inhibited, unsafe, coordinated), as a table, and an exit code that says whether the inhibitor prevents the bug,
 * its absence reproduces it, and coordinated discard gives memory back and stays coherent.
 */
public final class CoherenceDemo {
    private CoherenceDemo() {
    }

    /** Run the demo; returns the process exit code. */
    public static int run(Config config, PrintStream out, PrintStream err) {
        Optional<String> missing = IoUring.unavailabilityCause();
        if (missing.isPresent()) {
            err.println("actovisor coherence-demo: the pinned backend needs io_uring: " + missing.get());
            return 1;
        }
        CoherenceScenario.Outcome safe = CoherenceScenario.run(config, false);
        CoherenceScenario.Outcome unsafe = CoherenceScenario.run(config, true);
        CoherenceScenario.Outcome coordinated = CoherenceScenario.runCoordinated(config);
        out.printf("%-24s %15s %15s %17s %12s %9s%n", "scenario", "pages discarded", "pages skipped",
                "incoherent pages", "device byte", "CPU byte");
        for (CoherenceScenario.Outcome o : List.of(safe, unsafe, coordinated)) {
            out.printf("%-24s %15d %15d %17d %12s %9s%n", o.scenario(), o.pagesDiscarded(), o.pagesSkipped(),
                    o.report().incoherent().size(), show(o.deviceByte()), show(o.cpuByte()));
        }
        out.println("coordinated: device DMA into the block while discarded: " + coordinated.duringDiscard()
                + "; audited " + coordinated.report().pagesChecked() + " pages: " + coordinated.audited());
        if (!unsafe.incoherentPages().isEmpty()) {
            out.println("incoherent pages (" + unsafe.scenario() + "): " + unsafe.incoherentPages().stream()
                    .map(a -> "0x" + Long.toHexString(a)).toList());
        }
        List<String> problems = new ArrayList<>();
        if (!safe.report().coherent() || safe.deviceByte() != safe.cpuByte()) {
            problems.add("the inhibited scenario is not coherent: " + safe.report().incoherent().size()
                    + " incoherent pages, device " + show(safe.deviceByte()) + " vs CPU " + show(safe.cpuByte()));
        }
        List<Long> expected = new ArrayList<>();
        for (long frame : CoherenceScenario.INFLATED) {
            expected.add(frame * 4096);
        }
        if (!unsafe.incoherentPages().equals(expected) || unsafe.deviceByte() == unsafe.cpuByte()) {
            problems.add("the unsafe scenario did not reproduce the bug on exactly the ballooned pages: incoherent "
                    + unsafe.incoherentPages() + ", expected " + expected);
        }
        if (coordinated.pagesDiscarded() == 0 || !coordinated.report().coherent()
                || coordinated.report().pagesChecked() != CoherenceScenario.BLOCK_FRAMES.length
                || coordinated.deviceByte() != coordinated.cpuByte() || !coordinated.duringDiscard().equals("fault")) {
            problems.add("the coordinated scenario did not discard a block and keep it coherent: "
                    + coordinated.pagesDiscarded() + " pages discarded, " + coordinated.report().incoherent().size()
                    + " incoherent of " + coordinated.report().pagesChecked() + " audited, device read during the "
                    + "discard: " + coordinated.duringDiscard());
        }
        if (problems.isEmpty()) {
            out.println("OK: with the inhibitor the device and the CPU agree; without it the device reads stale "
                    + "pages exactly where the balloon discarded pinned memory; coordinated, a whole block is "
                    + "discarded after its unmap and device and CPU agree on it once it is mapped again.");
            return 0;
        }
        problems.forEach(p -> err.println("actovisor coherence-demo: " + p));
        return 1;
    }

    private static String show(byte b) {
        return CoherenceScenario.show(b);
    }
}
