package io.actovisor.kernel.vfio;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.kernel.testing.CProbe;
import io.actovisor.memory.sys.Ioctl;
import java.lang.reflect.Field;
import java.lang.reflect.Modifier;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
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
        CProbe.require(HEADER);
        kernel = CProbe.compileAndRun(VfioAbiTest.class, "/vfio/vfio_abi_probe.c", work);
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
