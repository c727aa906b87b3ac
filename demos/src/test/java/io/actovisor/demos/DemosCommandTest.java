package io.actovisor.demos;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The demos' command line as {@code ./actovisor coherence-demo} and {@code vfio-edu-demo} reach it. */
class DemosCommandTest {
    private record Result(int code, String out, String err) {
    }

    private static Result run(String... args) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int code = DemosMain.run(args, new PrintStream(out, true, StandardCharsets.UTF_8),
                new PrintStream(err, true, StandardCharsets.UTF_8));
        return new Result(code, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
    }

    @Test
    void eachDemoHasItsHelpUnderTheLaunchersName() {
        for (String command : List.of("coherence-demo", "vfio-edu-demo")) {
            Result help = run(command, "--help");
            assertEquals(0, help.code(), help.err());
            assertTrue(help.out().contains("Usage: actovisor " + command), help.out());
        }
    }

    @Test
    void noCommandOrAnUnknownOneIsAUsageError() {
        Result none = run();
        assertEquals(2, none.code());
        assertTrue(none.err().contains("coherence-demo") && none.err().contains("vfio-edu-demo"), none.err());
        Result unknown = run("run");
        assertEquals(2, unknown.code());
        assertTrue(unknown.err().contains("run"), unknown.err());
        Result badOption = run("vfio-edu-demo", "--bogus");
        assertEquals(2, badOption.code());
        assertTrue(badOption.err().contains("--bogus"), badOption.err());
    }
}
