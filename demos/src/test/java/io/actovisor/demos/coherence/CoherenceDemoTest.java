package io.actovisor.demos.coherence;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.ConfigFactory;
import io.actovisor.kernel.uring.IoUring;
import io.actovisor.memory.testing.NativeRequirement;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.Test;

/** {@code ./actovisor coherence-demo}: the table and the exit code. */
class CoherenceDemoTest {
    @Test
    void printsTheThreeScenariosAndExitsZeroWhenTheFixesHoldAndTheBugReproduces() {
        NativeRequirement.require("io_uring", IoUring.unavailabilityCause());
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int exit = CoherenceDemo.run(ConfigFactory.load(), new PrintStream(out, true, StandardCharsets.UTF_8),
                new PrintStream(err, true, StandardCharsets.UTF_8));
        String table = out.toString(StandardCharsets.UTF_8);
        assertEquals(0, exit, table + err.toString(StandardCharsets.UTF_8));
        assertTrue(table.matches("(?s).*inhibited\\s+0\\s+8\\s+0\\s+'B'\\s+'B'.*"), table);
        assertTrue(table.matches("(?s).*unsafe-ignore-inhibitor\\s+8\\s+0\\s+8\\s+'A'\\s+'B'.*"), table);
        assertTrue(table.matches("(?s).*coordinated\\s+16\\s+0\\s+0\\s+'B'\\s+'B'.*"), table);
        assertTrue(table.contains("while discarded: fault; audited 16 pages"), table);
    }
}
