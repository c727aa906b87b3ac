package io.actovisor.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.BufferedReader;
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
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The API under load: 32 concurrent loopback clients mix PATCH /balloon, PUT and DELETE /vfio/groups/{id},
 * GET /balloon/statistics and GET /metrics against a running KVM VM for {@code actovisor.load.seconds} (10 s in
 * {@code mvn verify}; the benchmark in docs/benchmarks.md ran 60 s). No 5xx, every request answered, the VM keeps
 * running, and at the end the inhibitor count equals the attached groups, every container with an attached group
 * maps guest RAM and no other does, and the VMM shuts down cleanly. Throughput and p99 per endpoint are printed.
 */
class ApiLoadTest {
    private static final Pattern API = Pattern.compile("API listening on (http://[0-9.]+:[0-9]+)");
    private static final int CLIENTS = 32;
    private static final List<String> GROUPS = List.of("g1", "g2", "g3");

    @TempDir
    Path dir;
    private Process vmm;

    @AfterEach
    void kill() {
        if (vmm != null && vmm.isAlive()) {
            vmm.destroyForcibly();
        }
    }

    @Test
    void thirtyTwoClientsMixingEndpointsGetAnAnswerEachAndLeaveTheVmConsistent() throws Exception {
        // guest.kind is auto: the firmware guest on KVM, the scripted guest where /dev/kvm is missing.
        long seconds = Long.getLong("actovisor.load.seconds", 10);
        Path conf = Files.writeString(dir.resolve("load.conf"), """
                actovisor.vm {
                  name = "load"
                  vcpus = 1
                  memory = [
                    { name = "ram", kind = ram, base = "0x0", size = 32 MiB }
                    { name = "balloon-mmio", kind = mmio, base = "0xd0001000", size = 4 KiB, device = "balloon" }
                  ]
                  vfio.containers = [
                    { name = "a", backend = model, groups = [ { id = "g1" }, { id = "g2" } ] }
                    { name = "b", backend = model, groups = [ { id = "g3" } ] }
                  ]
                  balloon { enabled = true, stats-polling-interval = 1s, mmio-base = "0xd0001000" }
                  devices.dma.enabled = false
                }
                """);
        List<String> command = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java")
                .toString(), "-cp", System.getProperty("java.class.path"), "io.actovisor.vmm.Main", "run",
                conf.toString()));
        ProcessBuilder builder = new ProcessBuilder(command).redirectError(dir.resolve("stderr.txt").toFile());
        builder.environment().put("XDG_RUNTIME_DIR", dir.toString());
        vmm = builder.start();
        BufferedReader stdout = new BufferedReader(new InputStreamReader(vmm.getInputStream(),
                StandardCharsets.UTF_8));
        String base = null;
        for (String line; base == null && (line = stdout.readLine()) != null; ) {
            Matcher m = API.matcher(line);
            if (m.find()) {
                base = m.group(1);
            }
        }
        assertTrue(base != null, "the VMM did not start: " + Files.readString(dir.resolve("stderr.txt")));
        Thread drain = new Thread(() -> {
            try {
                while (stdout.readLine() != null) {
                    // The guest console; not needed here.
                }
            } catch (java.io.IOException ended) {
                // The process ended.
            }
        }, "vmm-stdout");
        drain.setDaemon(true);
        drain.start();
        String json = Files.readString(dir.resolve("actovisor").resolve("load.json"));
        Matcher t = Pattern.compile("\"token\":\"([^\"]+)\"").matcher(json);
        assertTrue(t.find(), json);
        String token = t.group(1);
        HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
        String api = base;

        Map<String, List<Long>> latencies = new ConcurrentHashMap<>();
        List<String> failures = Collections.synchronizedList(new ArrayList<>());
        Map<String, Set<Integer>> allowed = Map.of(
                "PATCH /balloon", Set.of(204),
                "PUT /vfio/groups/{id}", Set.of(204, 409),
                "DELETE /vfio/groups/{id}", Set.of(204, 409),
                "GET /balloon/statistics", Set.of(200),
                "GET /metrics", Set.of(200));
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds);
        CountDownLatch done = new CountDownLatch(CLIENTS);
        for (int c = 0; c < CLIENTS; c++) {
            Random random = new Random(c);
            Thread client = new Thread(() -> {
                try {
                    while (System.nanoTime() < end) {
                        String group = GROUPS.get(random.nextInt(GROUPS.size()));
                        int op = random.nextInt(5);
                        String name = switch (op) {
                            case 0 -> "PATCH /balloon";
                            case 1 -> "PUT /vfio/groups/{id}";
                            case 2 -> "DELETE /vfio/groups/{id}";
                            case 3 -> "GET /balloon/statistics";
                            default -> "GET /metrics";
                        };
                        HttpRequest.Builder b = switch (op) {
                            case 0 -> HttpRequest.newBuilder(URI.create(api + "/balloon")).method("PATCH",
                                    HttpRequest.BodyPublishers.ofString("{\"amount_mib\": " + random.nextInt(9)
                                            + "}")).header("Content-Type", "application/json");
                            case 1 -> HttpRequest.newBuilder(URI.create(api + "/vfio/groups/" + group))
                                    .PUT(HttpRequest.BodyPublishers.noBody());
                            case 2 -> HttpRequest.newBuilder(URI.create(api + "/vfio/groups/" + group)).DELETE();
                            case 3 -> HttpRequest.newBuilder(URI.create(api + "/balloon/statistics"));
                            default -> HttpRequest.newBuilder(URI.create(api + "/metrics"));
                        };
                        long start = System.nanoTime();
                        try {
                            HttpResponse<String> r = http.send(b.timeout(Duration.ofSeconds(30))
                                    .header("Authorization", "Bearer " + token).build(),
                                    HttpResponse.BodyHandlers.ofString());
                            latencies.computeIfAbsent(name, k -> Collections.synchronizedList(new ArrayList<>()))
                                    .add(System.nanoTime() - start);
                            if (!allowed.get(name).contains(r.statusCode())) {
                                failures.add(name + " -> " + r.statusCode() + " " + r.body());
                            }
                        } catch (Exception e) {
                            failures.add(name + " -> no answer: " + e);
                        }
                    }
                } finally {
                    done.countDown();
                }
            }, "load-client-" + c);
            client.start();
        }
        assertTrue(done.await(seconds + 120, TimeUnit.SECONDS), "the clients did not finish");
        assertEquals(List.of(), failures.size() > 20 ? failures.subList(0, 20) : failures);

        StringBuilder table = new StringBuilder(String.format("%-26s %9s %11s %9s %9s%n", "endpoint", "requests",
                "per second", "p50 ms", "p99 ms"));
        long total = 0;
        for (Map.Entry<String, List<Long>> e : new TreeMap<>(latencies).entrySet()) {
            List<Long> sorted = new ArrayList<>(e.getValue());
            Collections.sort(sorted);
            total += sorted.size();
            table.append(String.format("%-26s %9d %11.1f %9.1f %9.1f%n", e.getKey(), sorted.size(),
                    sorted.size() / (double) seconds, sorted.get(sorted.size() / 2) / 1e6,
                    sorted.get(Math.min(sorted.size() - 1, (int) Math.ceil(sorted.size() * 0.99) - 1)) / 1e6));
        }
        table.append(String.format("%-26s %9d %11.1f%n", "all", total, total / (double) seconds));
        System.out.println("ApiLoadTest: " + CLIENTS + " clients, " + seconds + " s\n" + table);
        assertEquals(5, latencies.size(), "every endpoint was exercised: " + latencies.keySet());

        // Quiescent: the VM runs, and the counts agree with what is attached.
        String vm = get(http, api + "/vm", token);
        assertTrue(vm.contains("\"state\" : \"Running\""), vm);
        String vfio = get(http, api + "/vfio", token);
        String balloon = get(http, api + "/balloon", token);
        int attached = count(vfio, "\"attached\" : true");
        Matcher inhibitors = Pattern.compile("\"inhibitors\" : (\\d+)").matcher(balloon);
        assertTrue(inhibitors.find(), balloon);
        assertEquals(attached, Integer.parseInt(inhibitors.group(1)), "inhibitors == attached groups: " + balloon
                + vfio);
        for (String container : List.of("a", "b")) {
            Matcher c = Pattern.compile("\"name\" : \"" + container + "\",\\s*\"backend\" : \"[^\"]+\",\\s*"
                    + "\"groups\" : \\[([^]]*)],\\s*\"mappings\" : \\[([^]]*)]", Pattern.DOTALL).matcher(vfio);
            assertTrue(c.find(), vfio);
            assertEquals(!c.group(1).isBlank(), !c.group(2).isBlank(),
                    "container " + container + " maps guest RAM exactly while a group is attached: " + vfio);
        }

        HttpResponse<String> shutdown = http.send(HttpRequest.newBuilder(URI.create(api + "/actions"))
                .PUT(HttpRequest.BodyPublishers.ofString("{\"action_type\": \"Shutdown\"}"))
                .header("Content-Type", "application/json").header("Authorization", "Bearer " + token).build(),
                HttpResponse.BodyHandlers.ofString());
        assertEquals(204, shutdown.statusCode(), shutdown.body());
        assertTrue(vmm.waitFor(60, TimeUnit.SECONDS), "the VMM exits after the load");
        assertEquals(0, vmm.exitValue(), Files.readString(dir.resolve("stderr.txt")));
        assertFalse(Files.exists(dir.resolve("actovisor").resolve("load.json")));
    }

    private static String get(HttpClient http, String url, String token) throws Exception {
        HttpResponse<String> r = http.send(HttpRequest.newBuilder(URI.create(url))
                .header("Authorization", "Bearer " + token).build(), HttpResponse.BodyHandlers.ofString());
        assertEquals(200, r.statusCode(), url + " " + r.body());
        return r.body();
    }

    private static int count(String text, String needle) {
        return text.split(Pattern.quote(needle), -1).length - 1;
    }
}
