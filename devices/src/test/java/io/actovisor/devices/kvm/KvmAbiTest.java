package io.actovisor.devices.kvm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.memory.testing.NativeRequirement;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Compiles a C probe against {@code /usr/include/linux/kvm.h} and compares every number {@link KvmAbi} declares. */
class KvmAbiTest {
    private static final Path HEADER = Path.of("/usr/include/linux/kvm.h");

    @Test
    void everyDeclaredNumberMatchesTheKernelHeader(@TempDir Path dir) throws Exception {
        NativeRequirement.require("gcc and linux/kvm.h", probeUnavailability());
        Map<String, Long> declared = KvmAbi.expressions();
        assertTrue(declared.size() > 90, "KvmAbi declares only " + declared.size() + " constants");

        StringBuilder c = new StringBuilder("#include <stddef.h>\n#include <stdio.h>\n#include <linux/kvm.h>\n")
                .append("int main(void) {\n");
        List<String> names = new ArrayList<>(declared.keySet());
        for (int i = 0; i < names.size(); i++) {
            c.append("  printf(\"%d %llu\\n\", ").append(i).append(", (unsigned long long)(")
                    .append(names.get(i)).append("));\n");
        }
        c.append("  return 0;\n}\n");
        Path source = dir.resolve("kvm_probe.c");
        Path binary = dir.resolve("kvm_probe");
        Files.writeString(source, c);
        run(List.of("gcc", "-Wall", "-o", binary.toString(), source.toString()));
        String out = run(List.of(binary.toString()));

        Map<String, Long> actual = new LinkedHashMap<>();
        for (String line : out.strip().split("\n")) {
            String[] parts = line.split(" ");
            actual.put(names.get(Integer.parseInt(parts[0])), Long.parseUnsignedLong(parts[1]));
        }
        assertEquals(names.size(), actual.size(), "the probe printed a value for every expression");
        List<String> mismatches = new ArrayList<>();
        declared.forEach((expr, value) -> {
            if (!value.equals(actual.get(expr))) {
                mismatches.add(expr + ": Java 0x" + Long.toHexString(value) + ", kvm.h 0x"
                        + Long.toHexString(actual.get(expr)));
            }
        });
        assertEquals(List.of(), mismatches);
    }

    static Optional<String> probeUnavailability() {
        if (!Files.isReadable(HEADER)) {
            return Optional.of(HEADER + " is missing (install linux-libc-dev)");
        }
        try {
            run(List.of("gcc", "--version"));
            return Optional.empty();
        } catch (Exception e) {
            return Optional.of("gcc is not runnable: " + e.getMessage());
        }
    }

    private static String run(List<String> command) throws IOException, InterruptedException {
        Process p = new ProcessBuilder(command).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        if (!p.waitFor(60, TimeUnit.SECONDS) || p.exitValue() != 0) {
            throw new IOException(String.join(" ", command) + " failed: " + out);
        }
        return out;
    }
}
