package io.actovisor.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The class path {@code ./actovisor} runs with: computed by Maven with the launcher's own arguments, it holds the
 * runtime dependencies and no test jar.
 */
class LauncherTest {
    private static final Path ROOT = Path.of("..").toAbsolutePath().normalize();

    @TempDir
    Path dir;

    @Test
    void theLaunchersClassPathHasNoTestJar() throws Exception {
        String launcher = Files.readString(ROOT.resolve("actovisor"));
        Matcher m = Pattern.compile("(?m)^CLASSPATH_ARGS=\\((.*)\\)$").matcher(launcher);
        assertTrue(m.find(), "the launcher declares CLASSPATH_ARGS=(...)");
        Path out = dir.resolve("classpath");
        List<String> command = new ArrayList<>(List.of("mvn", "-B", "-q", "-f", ROOT.resolve("pom.xml").toString(),
                "-pl", "vmm", "-am", "test-compile"));
        for (String arg : m.group(1).trim().split("\\s+")) {
            command.add(arg.startsWith("-Dmdep.outputFile=") ? "-Dmdep.outputFile=" + out : arg);
        }
        Process mvn = new ProcessBuilder(command).redirectErrorStream(true)
                .redirectOutput(dir.resolve("mvn.log").toFile()).start();
        assertTrue(mvn.waitFor(10, TimeUnit.MINUTES), "mvn did not finish");
        assertEquals(0, mvn.exitValue(), Files.readString(dir.resolve("mvn.log")));
        List<String> entries = Arrays.asList(Files.readString(out, StandardCharsets.UTF_8).trim().split(":"));
        assertTrue(entries.stream().anyMatch(e -> e.contains("picocli")), entries.toString());
        assertTrue(entries.stream().anyMatch(e -> e.contains("pekko-http_")), entries.toString());
        List<String> testJars = entries.stream().filter(e -> e.matches(
                ".*(junit|jqwik|opentest4j|apiguardian|testkit|-tests\\.jar|/test-classes).*")).toList();
        assertEquals(List.of(), testJars, "test jars on the runtime class path");
    }
}
