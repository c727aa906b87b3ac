package io.actovisor.devices.boot.linux;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.actovisor.kernel.testing.CProbe;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Compiles every {@link BootParamsAbi} expression against {@code <asm/bootparam.h>} and compares. */
class BootParamsAbiTest {
    private static final Path HEADER = Path.of("/usr/include/x86_64-linux-gnu/asm/bootparam.h");

    @Test
    void everyOffsetMatchesTheKernelHeader(@TempDir Path dir) throws Exception {
        CProbe.require(HEADER);
        Map<String, Long> declared = BootParamsAbi.expressions();
        StringBuilder c = new StringBuilder("#include <stddef.h>\n#include <stdio.h>\n#include <asm/bootparam.h>\n")
                .append("int main(void) {\n");
        List<String> names = new ArrayList<>(declared.keySet());
        for (int i = 0; i < names.size(); i++) {
            c.append("  printf(\"%d %llu\\n\", ").append(i).append(", (unsigned long long)(")
                    .append(names.get(i)).append("));\n");
        }
        c.append("  return 0;\n}\n");
        Map<String, Long> actual = new LinkedHashMap<>();
        for (String line : CProbe.output(c.toString(), "bootparam_probe", dir).strip().split("\n")) {
            String[] parts = line.split(" ");
            actual.put(names.get(Integer.parseInt(parts[0])), Long.parseUnsignedLong(parts[1]));
        }
        List<String> mismatches = new ArrayList<>();
        declared.forEach((expr, value) -> {
            if (!value.equals(actual.get(expr))) {
                mismatches.add(expr + ": Java " + value + ", bootparam.h " + actual.get(expr));
            }
        });
        assertEquals(List.of(), mismatches);
        assertEquals(names.size(), actual.size());
    }
}
