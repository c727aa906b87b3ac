package io.actovisor.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.kernel.kvm.Kvm;
import io.actovisor.kernel.uring.IoUring;
import io.actovisor.memory.testing.NativeRequirement;
import io.actovisor.memory.testing.TestTimeouts;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The VMM as a user runs it: a separate JVM running {@code io.actovisor.vmm.Main} (what {@code ./actovisor} runs),
 * driven through its REST API and signals.
 */
@Tag("kvm")
class VmmProcessTest {
    private static final Pattern API = Pattern.compile("API listening on (http://[0-9.]+:[0-9]+)");
    private final HttpClient http = HttpClient.newHttpClient();
    private final List<String> output = new ArrayList<>();
    private final BlockingQueue<String> lines = new LinkedBlockingQueue<>();
    private Process vmm;

    @TempDir
    Path dir;

    /** Per test, so that a machine without KVM reports each test skipped with the reason, not a class of none. */
    @BeforeEach
    void requireNative() {
        NativeRequirement.requireKvm(Kvm.unavailabilityCause());
        NativeRequirement.require("io_uring (the default VM's pinned container)", IoUring.unavailabilityCause());
    }

    private Process launch(String... args) throws IOException {
        return launch(Map.of(), args);
    }

    /** The VMM in a child JVM whose access files go to {@code dir} (its XDG_RUNTIME_DIR). */
    private Process launch(Map<String, String> env, String... args) throws IOException {
        List<String> command = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java")
                .toString(), "-cp", System.getProperty("java.class.path"),
                // The VMM's own logging, as users get it (not this module's logback-test.xml).
                "-Dlogback.configurationFile=logback.xml", "io.actovisor.vmm.Main"));
        command.addAll(List.of(args));
        ProcessBuilder builder = new ProcessBuilder(command).redirectError(dir.resolve("stderr.txt").toFile());
        builder.environment().put("XDG_RUNTIME_DIR", dir.toString());
        builder.environment().putAll(env);
        Process p = builder.start();
        Thread reader = new Thread(() -> {
            try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(),
                    StandardCharsets.UTF_8))) {
                for (String line; (line = r.readLine()) != null; ) {
                    synchronized (output) {
                        output.add(line);
                    }
                    lines.add(line);
                }
            } catch (IOException ignored) {
                // The process ended.
            }
        }, "vmm-stdout");
        reader.setDaemon(true);
        reader.start();
        return p;
    }

    /** The first line of the whole output so far (or to come) that matches {@code pattern}. */
    private String awaitLine(Pattern pattern, Duration timeout) throws InterruptedException {
        Duration scaled = TestTimeouts.scaled(timeout);
        long deadline = System.nanoTime() + scaled.toNanos();
        while (System.nanoTime() < deadline) {
            synchronized (output) {
                for (String line : output) {
                    if (pattern.matcher(line).find()) {
                        return line;
                    }
                }
            }
            if (lines.poll(200, TimeUnit.MILLISECONDS) == null && !vmm.isAlive()) {
                break;
            }
        }
        throw new AssertionError("no line matching " + pattern + " within " + scaled + "; output: " + output());
    }

    private String output() {
        synchronized (output) {
            return String.join("\n", output);
        }
    }

    /** The token of VM {@code vm}, from the access file {@code run} wrote. */
    private String token(String vm) throws IOException {
        String json = Files.readString(dir.resolve("actovisor").resolve(vm + ".json"));
        Matcher m = Pattern.compile("\"token\":\"([^\"]+)\"").matcher(json);
        assertTrue(m.find(), json);
        return m.group(1);
    }

    private String token = "";

    private HttpResponse<String> send(String method, String url, String body) throws Exception {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(url))
                .timeout(TestTimeouts.scaled(Duration.ofSeconds(10))).header("Authorization", "Bearer " + token);
        b.method(method, body == null ? HttpRequest.BodyPublishers.noBody()
                : HttpRequest.BodyPublishers.ofString(body));
        if (body != null) {
            b.header("Content-Type", "application/json");
        }
        return http.send(b.build(), HttpResponse.BodyHandlers.ofString());
    }

    @AfterEach
    void killLeftovers() {
        if (vmm != null && vmm.isAlive()) {
            vmm.destroyForcibly();
        }
    }

    @Test
    void theDefaultVmRunsIsManagedThroughTheApiAndShutsDownCleanly() throws Exception {
        vmm = launch("run");
        Matcher api = API.matcher(awaitLine(API, Duration.ofSeconds(60)));
        assertTrue(api.find());
        String base = api.group(1);
        token = token("default");
        assertEquals(401, http.send(HttpRequest.newBuilder(URI.create(base + "/vm")).build(),
                HttpResponse.BodyHandlers.ofString()).statusCode(), "every request needs the token");
        awaitLine(Pattern.compile("hello from guest"), Duration.ofSeconds(30));
        awaitLine(Pattern.compile("round 1: pages 512 balloon 0 cpu ([0-9a-f]{16}) dma \\1 match"), Duration.ofSeconds(60));

        HttpResponse<String> vm = send("GET", base + "/vm", null);
        assertEquals(200, vm.statusCode());
        assertTrue(vm.body().contains("\"state\" : \"Running\""), vm.body());

        HttpResponse<String> target = send("PATCH", base + "/balloon", "{\"amount_mib\": 8}");
        assertEquals(204, target.statusCode(), target.body());
        assertTrue(send("GET", base + "/balloon", null).body().contains("\"amount_mib\" : 8"));
        String metrics = send("GET", base + "/metrics", null).body();
        assertTrue(metrics.contains("actovisor_balloon_target_bytes 8388608.0"), metrics);
        assertTrue(metrics.contains("actovisor_balloon_inhibitors 1.0"), metrics);
        assertTrue(metrics.contains("actovisor_iommu_pinned_bytes{container=\"passthrough\"} 6.7108864E7"), metrics);

        for (String bad : List.of("{\"amount_mib\": ", "{\"amount_mib\": 8, \"extra\": 1}", "{\"amount_mib\": -1}",
                "{\"amount_mib\": 99999999999999999999}", "{\"amount_mib\": \"eight\"}", "{\"amount_mib\": 65}")) {
            HttpResponse<String> refused = send("PATCH", base + "/balloon", bad);
            assertEquals(400, refused.statusCode(), bad + " -> " + refused.body());
            assertTrue(refused.body().contains("fault_message"), refused.body());
            assertTrue(refused.body().contains("amount_mib") || refused.body().contains("extra")
                    || refused.body().contains("JSON"), bad + " -> " + refused.body());
        }
        assertTrue(send("GET", base + "/vm", null).body().contains("Running"), "the VM keeps running");
        assertTrue(send("GET", base + "/balloon", null).body().contains("\"amount_mib\" : 8"),
                "refused requests changed nothing");

        assertTrue(metrics.contains("actovisor_vcpu_exits_total{"), metrics);

        // Firecracker's PATCH /balloon/statistics and PATCH /vm on the real VM.
        assertEquals(204, send("PATCH", base + "/balloon/statistics", "{\"stats_polling_interval_s\": 1}")
                .statusCode());
        assertTrue(send("GET", base + "/balloon", null).body().contains("\"stats_polling_interval_s\" : 1"));
        assertEquals(204, send("PATCH", base + "/vm", "{\"state\": \"Paused\"}").statusCode());
        assertTrue(send("GET", base + "/", null).body().contains("\"state\" : \"Paused\""));
        assertEquals(409, send("PATCH", base + "/vm", "{\"state\": \"Paused\"}").statusCode());
        assertEquals(204, send("PATCH", base + "/vm", "{\"state\": \"Resumed\"}").statusCode());

        // Hot detach and attach of the configured group, with the inhibitor following.
        HttpResponse<String> detached = send("DELETE", base + "/vfio/groups/dma0", null);
        assertEquals(204, detached.statusCode(), detached.body());
        assertTrue(send("GET", base + "/balloon", null).body().contains("\"inhibitors\" : 0"));
        assertTrue(send("GET", base + "/vfio", null).body().contains("\"attached\" : false"));
        assertEquals(409, send("DELETE", base + "/vfio/groups/dma0", null).statusCode(), "not attached");
        assertEquals(404, send("PUT", base + "/vfio/groups/nope", null).statusCode(), "not configured");
        HttpResponse<String> attached = send("PUT", base + "/vfio/groups/dma0", null);
        assertEquals(204, attached.statusCode(), attached.body());
        assertEquals(409, send("PUT", base + "/vfio/groups/dma0", null).statusCode(), "already attached");
        assertTrue(send("GET", base + "/balloon", null).body().contains("\"inhibitors\" : 1"));

        assertEquals(204, send("PUT", base + "/actions", "{\"action_type\": \"Shutdown\"}").statusCode());
        assertTrue(vmm.waitFor(TestTimeouts.scaledSeconds(30), TimeUnit.SECONDS), "the VMM exits after an API shutdown");
        assertEquals(0, vmm.exitValue(), output());
        assertTrue(output().contains("VM default stopped"), output());
        assertFalse(Files.exists(dir.resolve("actovisor").resolve("default.json")), "the access file is removed");
    }

    @Test
    void metricsOfAVmWithTwoVcpusAndTwoContainersPassPromtool() throws Exception {
        Optional<Path> promtool = Stream.of(System.getenv("PATH").split(":")).map(d -> Path.of(d, "promtool"))
                .filter(Files::isExecutable).findFirst();
        NativeRequirement.require("promtool (Debian package prometheus)", promtool.isPresent() ? Optional.empty()
                : Optional.of("promtool is not on the PATH; apt-get install prometheus"));
        Path conf = Files.writeString(dir.resolve("two.conf"), """
                actovisor.vm {
                  name = "two"
                  vcpus = 2
                  memory = [ { name = "ram", kind = ram, base = "0x0", size = 16 MiB } ]
                  vfio.containers = [
                    { name = "a", backend = model, groups = [ { id = "g1", attach-at-start = true } ] }
                    { name = "b", backend = model, groups = [ { id = "g2", attach-at-start = true } ] }
                  ]
                  balloon.enabled = false
                  devices.dma.enabled = false
                }
                """);
        vmm = launch("run", conf.toString());
        Matcher api = API.matcher(awaitLine(API, Duration.ofSeconds(120)));
        assertTrue(api.find());
        token = token("two");
        String base = api.group(1);
        HttpResponse<String> metrics = send("GET", base + "/metrics", null);
        assertEquals(200, metrics.statusCode(), metrics.body());
        assertEquals(Optional.of("text/plain; version=0.0.4; charset=UTF-8"),
                metrics.headers().firstValue("Content-Type"));
        String text = metrics.body();
        assertTrue(text.contains("actovisor_vm_vcpus 2.0"), text);
        assertTrue(text.contains("actovisor_iommu_pinned_bytes{container=\"b\"}"), text);
        assertTrue(text.contains("actovisor_iommu_pinned_bytes{container=\"a\"}"), text);
        Process check = new ProcessBuilder(promtool.get().toString(), "check", "metrics").redirectErrorStream(true)
                .start();
        check.getOutputStream().write(text.getBytes(StandardCharsets.UTF_8));
        check.getOutputStream().close();
        String verdict = new String(check.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(check.waitFor(TestTimeouts.scaledSeconds(30), TimeUnit.SECONDS));
        assertEquals(0, check.exitValue(), "promtool check metrics: " + verdict + "\n" + text);
        assertTrue(send("GET", base + "/balloon", null).statusCode() == 400, "no balloon: 400");
        vmm.destroy();
        assertTrue(vmm.waitFor(TestTimeouts.scaledSeconds(30), TimeUnit.SECONDS));
        assertEquals(0, vmm.exitValue(), output());
    }

    @Test
    void sigtermStopsTheVmAndExitsZero() throws Exception {
        vmm = launch("run");
        awaitLine(API, Duration.ofSeconds(60));
        vmm.destroy();
        assertTrue(vmm.waitFor(TestTimeouts.scaledSeconds(30), TimeUnit.SECONDS), "SIGTERM ends the VMM");
        assertEquals(0, vmm.exitValue(), output());
        String stderr = Files.readString(dir.resolve("stderr.txt"));
        assertFalse(stderr.contains("SLF4J"), "SLF4J is initialized before anything logs: " + stderr);
        assertTrue(Pattern.compile("(?m)^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}\\S+ INFO  \\[[^]]+\\] ")
                .matcher(stderr).find(), "log lines carry date and thread: " + stderr);
        assertFalse(Files.exists(dir.resolve("actovisor").resolve("default.json")), "the access file is removed");
    }

    @Test
    void validateReportsEveryErrorOrTheNormalizedDefinition() throws Exception {
        Path bad = Files.writeString(dir.resolve("bad.conf"), """
                actovisor.vm {
                  vcpus = many
                  memory = [ { name = ram, base = 0, sise = 64 MiB } ]
                  vfio.containers = [ { name = c, backend = nvlink } ]
                }
                """);
        vmm = launch("validate", bad.toString());
        assertTrue(vmm.waitFor(TestTimeouts.scaledSeconds(30), TimeUnit.SECONDS));
        assertEquals(2, vmm.exitValue());
        Path good = Files.writeString(dir.resolve("good.conf"), "actovisor.vm { name = small, vcpus = 2 }");
        vmm = launch("validate", good.toString());
        assertTrue(vmm.waitFor(TestTimeouts.scaledSeconds(30), TimeUnit.SECONDS));
        assertEquals(0, vmm.exitValue());
        assertTrue(output().contains("name = \"small\"") && output().contains("vcpus = 2"), output());
    }
}
