package io.actovisor.devices.vfio;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.memory.sys.Ioctl;
import io.actovisor.memory.testing.NativeRequirement;
import java.io.IOException;
import java.io.InputStream;
import java.lang.reflect.Field;
import java.lang.reflect.Modifier;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Compiles {@code vfio_abi_probe.c} with gcc against the installed {@code <linux/vfio.h>} and compares every
 * constant {@link VfioAbi} and {@link VfioIoctls} declare with what the compiler computes. Both directions are
 * checked: a Java constant the probe does not print fails, and so does a probe line no Java constant claims.
 */
class VfioAbiTest {
    private static final Path HEADER = Path.of("/usr/include/linux/vfio.h");

    @TempDir
    static Path work;

    private static Map<String, Long> kernel;

    @BeforeAll
    static void compileAndRunProbe() throws Exception {
        NativeRequirement.require("the VFIO ABI probe", probeUnavailability());
        Path source = work.resolve("vfio_abi_probe.c");
        try (InputStream in = VfioAbiTest.class.getResourceAsStream("/vfio/vfio_abi_probe.c")) {
            Files.copy(in, source);
        }
        Path binary = work.resolve("vfio_abi_probe");
        run(List.of("gcc", "-Wall", "-Werror", "-o", binary.toString(), source.toString()));
        kernel = new TreeMap<>();
        for (String line : run(List.of(binary.toString())).split("\n")) {
            String[] kv = line.trim().split(" ");
            kernel.put(kv[0], Long.parseLong(kv[1]));
        }
    }

    private static Optional<String> probeUnavailability() {
        if (!Files.isReadable(HEADER)) {
            return Optional.of(HEADER + " is missing (install the linux-libc-dev package)");
        }
        try {
            run(List.of("gcc", "--version"));
            return Optional.empty();
        } catch (Exception e) {
            return Optional.of("gcc cannot run: " + e.getMessage());
        }
    }

    private static String run(List<String> command) throws IOException, InterruptedException {
        Process process = new ProcessBuilder(command).redirectErrorStream(true).start();
        String output = new String(process.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        if (!process.waitFor(60, TimeUnit.SECONDS) || process.exitValue() != 0) {
            throw new IOException(String.join(" ", command) + " failed:\n" + output);
        }
        return output;
    }

    /** Every {@code static final} int/long of VfioAbi's nested classes, as "Class.FIELD". */
    private static Map<String, Long> javaConstants() throws IllegalAccessException {
        Map<String, Long> out = new TreeMap<>();
        for (Class<?> nested : VfioAbi.class.getDeclaredClasses()) {
            for (Field field : nested.getDeclaredFields()) {
                int m = field.getModifiers();
                if (Modifier.isStatic(m) && Modifier.isFinal(m)
                        && (field.getType() == int.class || field.getType() == long.class)) {
                    out.put(nested.getSimpleName() + "." + field.getName(), ((Number) field.get(null)).longValue());
                }
            }
        }
        return out;
    }

    /** Every {@link Ioctl} constant of VfioIoctls, by field name; the field name must be the ioctl's name. */
    private static Map<String, Ioctl> javaIoctls() throws IllegalAccessException {
        Map<String, Ioctl> out = new TreeMap<>();
        for (Field field : VfioIoctls.class.getDeclaredFields()) {
            if (field.getType() == Ioctl.class && Modifier.isStatic(field.getModifiers())) {
                Ioctl ioctl = (Ioctl) field.get(null);
                assertEquals(field.getName(), ioctl.name(), "VfioIoctls." + field.getName() + " is misnamed");
                out.put("Ioctl." + field.getName(), ioctl);
            }
        }
        return out;
    }

    @Test
    void everyJavaConstantMatchesTheKernelHeaders() throws Exception {
        List<String> wrong = new ArrayList<>();
        javaConstants().forEach((key, value) -> {
            Long expected = kernel.get(key);
            if (expected == null) {
                wrong.add(key + ": declared in Java (" + value + ") but not checked by the probe");
            } else if (expected.longValue() != value) {
                wrong.add(key + ": Java says " + value + ", <linux/vfio.h> says " + expected);
            }
        });
        javaIoctls().forEach((key, ioctl) -> {
            Long expected = kernel.get(key);
            if (expected == null) {
                wrong.add(key + ": declared in Java but not checked by the probe");
            } else if (expected.longValue() != ioctl.number()) {
                wrong.add(key + ": Java encodes 0x" + Long.toHexString(ioctl.number()) + ", the kernel 0x"
                        + Long.toHexString(expected));
            }
        });
        assertTrue(wrong.isEmpty(), String.join("\n", wrong));
    }

    @Test
    void everyProbedValueHasAJavaDeclaration() throws Exception {
        Map<String, Long> java = javaConstants();
        Map<String, Ioctl> ioctls = javaIoctls();
        List<String> orphans = kernel.keySet().stream()
                .filter(k -> !java.containsKey(k) && !ioctls.containsKey(k)).toList();
        assertTrue(orphans.isEmpty(), "the probe prints values no Java constant declares: " + orphans);
        assertEquals(java.size() + ioctls.size(), kernel.size());
    }

    @Test
    void vfioEncodesEveryRequestAsPlainIo() throws Exception {
        // _IO carries no size or direction: the structure size travels in argsz instead.
        for (Ioctl ioctl : javaIoctls().values()) {
            assertEquals(0, ioctl.number() >>> 16, ioctl + " has size or direction bits");
        }
    }
}
