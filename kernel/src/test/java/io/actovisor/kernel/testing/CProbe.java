package io.actovisor.kernel.testing;

import io.actovisor.memory.testing.NativeRequirement;
import java.io.IOException;
import java.io.InputStream;
import java.lang.reflect.Field;
import java.lang.reflect.Modifier;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;

/**
 * An ABI probe: a C program (a test resource) compiled with the machine's gcc against the installed kernel headers,
 * printing one {@code KEY value} line per constant, size or offset. Tests compare its output with the Java
 * constants that claim to mirror the header, in both directions.
 */
public final class CProbe {
    private CProbe() {
    }

    /** Skip (or fail under ACTOVISOR_REQUIRE_NATIVE=1) unless {@code header} is installed and gcc runs. */
    public static void require(Path header) {
        Optional<String> cause = Optional.empty();
        if (!Files.isReadable(header)) {
            cause = Optional.of(header + " is missing (install the linux-libc-dev package)");
        } else {
            try {
                run(List.of("gcc", "--version"));
            } catch (Exception e) {
                cause = Optional.of("gcc cannot run: " + e.getMessage());
            }
        }
        NativeRequirement.require("the ABI probe for " + header, cause);
    }

    /** Compile the resource {@code resource} in {@code work} and return what it prints, by key. */
    public static Map<String, Long> compileAndRun(Class<?> owner, String resource, Path work)
            throws IOException, InterruptedException {
        String source;
        try (InputStream in = owner.getResourceAsStream(resource)) {
            if (in == null) {
                throw new IOException("probe source " + resource + " is not on the test classpath");
            }
            source = new String(in.readAllBytes(), StandardCharsets.UTF_8);
        }
        Map<String, Long> values = new TreeMap<>();
        for (String line : output(source, Path.of(resource).getFileName().toString().replace(".c", ""), work)
                .split("\n")) {
            String[] kv = line.trim().split(" ");
            values.put(kv[0], Long.parseLong(kv[1]));
        }
        return values;
    }

    /**
     * Compile the C program {@code source} as {@code name} in {@code work}, warnings counting as errors, run it and
     * return what it prints.
     */
    public static String output(String source, String name, Path work) throws IOException, InterruptedException {
        Path file = work.resolve(name + ".c");
        Files.writeString(file, source);
        Path binary = work.resolve(name);
        run(List.of("gcc", "-Wall", "-Werror", "-o", binary.toString(), file.toString()));
        return run(List.of(binary.toString()));
    }

    /** Every {@code static final int} or {@code long} field of {@code constants}, by field name. */
    public static Map<String, Long> constantsOf(Class<?> constants) throws IllegalAccessException {
        Map<String, Long> out = new TreeMap<>();
        for (Field field : constants.getDeclaredFields()) {
            int m = field.getModifiers();
            if (Modifier.isStatic(m) && Modifier.isFinal(m) && Modifier.isPublic(m)
                    && (field.getType() == int.class || field.getType() == long.class)) {
                out.put(field.getName(), ((Number) field.get(null)).longValue());
            }
        }
        return out;
    }

    private static String run(List<String> command) throws IOException, InterruptedException {
        Process process = new ProcessBuilder(command).redirectErrorStream(true).start();
        String output = new String(process.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        if (!process.waitFor(60, TimeUnit.SECONDS) || process.exitValue() != 0) {
            throw new IOException(String.join(" ", command) + " failed:\n" + output);
        }
        return output;
    }
}
