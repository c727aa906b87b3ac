package io.actovisor.testkit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.memory.HostMemory;
import io.actovisor.memory.sys.Posix;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The leak check sees what a test leaves open (fd, memfd mapping, host memory) and nothing once it is closed. */
class LeakCheckTest {
    @Test
    void openHostMemoryIsALeakUntilClosed() {
        NativeRequirement.require("host memory (mmap, madvise)", Posix.unavailabilityCause());
        LeakCheck check = LeakCheck.start();
        HostMemory shared = HostMemory.shared("leakcheck-test", 1 << 20);
        check.track(shared);
        List<String> leaks = check.leaks();
        assertEquals(3, leaks.size(), leaks.toString());
        assertTrue(leaks.get(0).matches("fd \\d+ \\(/memfd:.*leakcheck-test.*\\) is still open"), leaks.get(0));
        assertTrue(leaks.get(1).startsWith("memfd mapping still present: "), leaks.get(1));
        assertTrue(leaks.get(2).startsWith("host memory leakcheck-test is still open; its mappings: ["),
                leaks.get(2));
        shared.close();
        assertEquals(List.of(), check.leaks());
    }
}
