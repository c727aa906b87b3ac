package io.actovisor.it.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.fail;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.actovisor.vmm.cli.ApiClient;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/**
 * One cluster node JVM of the process tests ({@code ClusterMain node FILE}): its standard output collected line by
 * line, its standard error in {@code node<index>.log}, and, once it printed its start line, its cluster address and
 * an API client with the token it wrote to its data directory.
 */
class NodeProcess {
    private static final Pattern STARTED = Pattern.compile("cluster node (\\S+) started; API (http://\\S+) ");
    private static final ObjectMapper JSON = new ObjectMapper();

    final int index;
    final Process process;
    final List<String> output = new ArrayList<>();
    private final Path dataDir;
    private final Path logFile;
    String address;
    ApiClient api;

    /**
     * Start node {@code index} on the node file {@code conf}, its command prefixed by {@code prefix} (e.g. {@code ip
     * netns exec NS}); its data directory is {@code dataDir}, its log {@code node<index>.log} beside {@code conf}.
     */
    NodeProcess(int index, List<String> prefix, Path conf, Path dataDir) throws IOException {
        this.index = index;
        this.dataDir = dataDir;
        this.logFile = conf.resolveSibling("node" + index + ".log");
        List<String> command = Stream.concat(prefix.stream(), Stream.of(
                Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                "--add-opens", "java.base/java.nio=ALL-UNNAMED", "--add-opens", "java.base/sun.nio.ch=ALL-UNNAMED",
                "-cp", System.getProperty("java.class.path"), "io.actovisor.cluster.ClusterMain", "node",
                conf.toString())).toList();
        this.process = new ProcessBuilder(command).redirectError(logFile.toFile()).start();
        Thread reader = new Thread(() -> {
            try (BufferedReader r = new BufferedReader(new InputStreamReader(process.getInputStream(),
                    StandardCharsets.UTF_8))) {
                for (String line; (line = r.readLine()) != null; ) {
                    synchronized (output) {
                        output.add(line);
                        output.notifyAll();
                    }
                }
            } catch (IOException ignored) {
                // The process ended.
            }
        }, "node-" + index + "-stdout");
        reader.setDaemon(true);
        reader.start();
    }

    /** Wait for the node's start line; fails with its output and log if it exits or {@code timeout} passes. */
    void awaitStarted(Duration timeout) throws Exception {
        long deadline = System.nanoTime() + timeout.toNanos();
        synchronized (output) {
            while (System.nanoTime() < deadline) {
                for (String line : output) {
                    Matcher m = STARTED.matcher(line);
                    if (m.find()) {
                        address = m.group(1);
                        api = new ApiClient(m.group(2), Optional.of(Files.readString(dataDir.resolve("api-token"))
                                .trim()));
                        return;
                    }
                }
                if (!process.isAlive()) {
                    fail("node " + index + " exited with " + process.exitValue() + ": " + output + "\n" + log());
                }
                output.wait(500);
            }
        }
        fail("node " + index + " did not start: " + output + "\n" + log());
    }

    /** The last 40 lines of the node's log, stack frames left out. */
    String log() {
        try {
            List<String> all = Files.readAllLines(logFile).stream().filter(l -> !l.startsWith("\tat ")).toList();
            return String.join("\n", all.subList(Math.max(0, all.size() - 40), all.size()));
        } catch (IOException e) {
            return "(no log: " + e.getMessage() + ")";
        }
    }

    JsonNode get(String path) throws Exception {
        ApiClient.Reply reply = api.send("GET", path, null);
        assertEquals(200, reply.status(), "node " + index + " " + path + ": " + reply.body());
        return JSON.readTree(reply.body());
    }

    /** The VM actors alive in this JVM. */
    Set<String> live() throws Exception {
        Set<String> out = new TreeSet<>();
        get("/cluster/local").get("live").forEach(n -> out.add(n.asText()));
        return out;
    }
}
