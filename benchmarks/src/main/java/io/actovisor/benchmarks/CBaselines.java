package io.actovisor.benchmarks;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * The C baselines, compiled with the machine's gcc now and run: {@code madvise_bench} (one madvise per page, and
 * one per coalesced range, over 256 MiB) and {@code uring_pin_bench} (1 GiB registered as io_uring fixed buffers
 * and unregistered). Run it right before or after the JMH run: {@code java -cp benchmarks.jar
 * io.actovisor.benchmarks.CBaselines}.
 */
public final class CBaselines {
    private CBaselines() {
    }

    public static void main(String[] args) throws IOException, InterruptedException {
        Path work = Files.createTempDirectory("actovisor-c-baselines");
        for (String program : List.of("madvise_bench", "uring_pin_bench")) {
            Path source = work.resolve(program + ".c");
            try (InputStream in = CBaselines.class.getResourceAsStream("/c/" + program + ".c")) {
                Files.copy(in, source);
            }
            Path binary = work.resolve(program);
            run(List.of("gcc", "-O2", "-o", binary.toString(), source.toString()));
            System.out.println("== " + program);
            System.out.print(run(List.of(binary.toString())));
        }
    }

    /** Compile and run {@code program} from the resources now; its output. */
    static String compileAndRun(String program) throws IOException, InterruptedException {
        Path work = Files.createTempDirectory("actovisor-c-baselines");
        Path source = work.resolve(program + ".c");
        try (InputStream in = CBaselines.class.getResourceAsStream("/c/" + program + ".c")) {
            Files.copy(in, source);
        }
        Path binary = work.resolve(program);
        run(List.of("gcc", "-O2", "-o", binary.toString(), source.toString()));
        return run(List.of(binary.toString()));
    }

    /** The milliseconds of each of {@code madvise_bench}'s coalesced runs (one madvise of 256 MiB). */
    static List<Double> madviseCoalescedMillis() throws IOException, InterruptedException {
        List<Double> out = new java.util.ArrayList<>();
        for (String line : compileAndRun("madvise_bench").split("\n")) {
            String[] f = line.trim().split("\\s+");
            if (f.length == 3 && f[0].equals("coalesced")) {
                out.add(Double.parseDouble(f[2]) * 1000);
            }
        }
        if (out.isEmpty()) {
            throw new IOException("madvise_bench printed no coalesced run");
        }
        return out;
    }

    private static String run(List<String> command) throws IOException, InterruptedException {
        Process p = new ProcessBuilder(command).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        if (p.waitFor() != 0) {
            throw new IOException(String.join(" ", command) + " failed:\n" + out);
        }
        return out;
    }
}
