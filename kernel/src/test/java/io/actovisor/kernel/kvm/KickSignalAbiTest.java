package io.actovisor.kernel.kvm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.kernel.testing.CProbe;
import io.actovisor.memory.sys.Signals;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Compiles a C probe against {@code <signal.h>} and runs it: the {@code struct sigaction} layout the kick handler
 * is installed with, and the kick signal within this libc's real-time range (glibc reserves the first few for
 * itself, so SIGRTMIN is only known at run time).
 */
class KickSignalAbiTest {
    private static final Path HEADER = Path.of("/usr/include/signal.h");

    @Test
    void theSigactionLayoutAndTheKickSignalMatchThisLibc(@TempDir Path dir) throws Exception {
        CProbe.require(HEADER);
        String out = CProbe.output("""
                #include <signal.h>
                #include <stddef.h>
                #include <stdio.h>
                int main(void) {
                    printf("size %zu\\n", sizeof(struct sigaction));
                    printf("handler %zu\\n", offsetof(struct sigaction, sa_handler));
                    printf("flags %zu\\n", offsetof(struct sigaction, sa_flags));
                    printf("restart %d\\n", SA_RESTART);
                    printf("rtmin %d\\n", SIGRTMIN);
                    printf("rtmax %d\\n", SIGRTMAX);
                    return 0;
                }
                """, "sigaction_probe", dir);
        Map<String, Long> c = new HashMap<>();
        for (String line : out.strip().split("\n")) {
            String[] kv = line.split(" ");
            c.put(kv[0], Long.parseLong(kv[1]));
        }
        assertEquals(c.get("size"), (long) Signals.SIGACTION_SIZE, "sizeof(struct sigaction)");
        assertEquals(c.get("handler"), (long) Signals.SIGACTION_HANDLER, "offsetof(sa_handler)");
        assertEquals(c.get("flags"), (long) Signals.SIGACTION_FLAGS, "offsetof(sa_flags)");
        assertNotEquals(0L, c.get("restart"), "SA_RESTART is a flag the zeroed flags leave out");
        assertTrue(KvmVcpu.KICK_SIGNAL >= c.get("rtmin") && KvmVcpu.KICK_SIGNAL <= c.get("rtmax"),
                "the kick signal " + KvmVcpu.KICK_SIGNAL + " is a real-time signal of this libc (" + c.get("rtmin")
                        + ".." + c.get("rtmax") + ")");
    }
}
