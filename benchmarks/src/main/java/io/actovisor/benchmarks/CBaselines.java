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

    private static String run(List<String> command) throws IOException, InterruptedException {
        Process p = new ProcessBuilder(command).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        if (p.waitFor() != 0) {
            throw new IOException(String.join(" ", command) + " failed:\n" + out);
        }
        return out;
    }
}
