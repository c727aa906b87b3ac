package io.actovisor.testkit;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;

/** docs/testkit.md shows its example test exactly as the compiled and run file is. */
class DocsExampleTest {
    @Test
    void theDocumentedExampleIsTheTestThatRuns() throws IOException {
        Path root = Path.of(System.getenv().getOrDefault("ACTOVISOR_PROJECT_ROOT", ".."));
        String page = Files.readString(root.resolve("docs/testkit.md"));
        String marker = "<!-- example: BalloonUnderMisbehaviourTest -->\n```java\n";
        int start = page.indexOf(marker) + marker.length();
        String shown = page.substring(start, page.indexOf("```\n", start));
        assertEquals(Files.readString(root.resolve(
                "testkit/src/test/java/io/actovisor/testkit/example/BalloonUnderMisbehaviourTest.java")), shown);
    }
}
