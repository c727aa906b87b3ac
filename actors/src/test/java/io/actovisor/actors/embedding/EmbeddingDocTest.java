package io.actovisor.actors.embedding;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;

/** docs/embedding.md shows {@link EmbeddedVmm} exactly as it is compiled (and run by {@code EmbeddedVmmTest}). */
class EmbeddingDocTest {
    @Test
    void docsEmbeddingShowsTheExampleAsCompiled() throws IOException {
        Path root = Path.of(System.getenv().getOrDefault("ACTOVISOR_PROJECT_ROOT", ".."));
        String page = Files.readString(root.resolve("docs/embedding.md"));
        String marker = "<!-- example: EmbeddedVmm -->\n```java\n";
        int start = page.indexOf(marker);
        assertTrue(start >= 0, "docs/embedding.md has no '" + marker.strip() + "' block");
        start += marker.length();
        String shown = page.substring(start, page.indexOf("```\n", start));
        assertEquals(Files.readString(root.resolve(
                "actors/src/test/java/io/actovisor/actors/embedding/EmbeddedVmm.java")), shown);
    }
}
