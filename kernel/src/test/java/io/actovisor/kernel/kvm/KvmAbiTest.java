package io.actovisor.kernel.kvm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.kernel.testing.CProbe;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Compiles a C probe against {@code /usr/include/linux/kvm.h} and compares every number {@link KvmAbi} declares. */
class KvmAbiTest {
    private static final Path HEADER = Path.of("/usr/include/linux/kvm.h");

    @Test
    void everyDeclaredNumberMatchesTheKernelHeader(@TempDir Path dir) throws Exception {
        CProbe.require(HEADER);
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
        String out = CProbe.output(c.toString(), "kvm_probe", dir);

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
}
