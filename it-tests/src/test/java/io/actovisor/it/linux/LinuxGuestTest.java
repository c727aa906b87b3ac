package io.actovisor.it.linux;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.ConfigFactory;
import io.actovisor.actors.balloon.BalloonActor;
import io.actovisor.actors.balloon.BalloonSettings;
import io.actovisor.actors.balloon.VirtioBalloonActor;
import io.actovisor.actors.linux.LinuxGuestEvent;
import io.actovisor.config.VmSpec;
import io.actovisor.config.VmSpecParser;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.sys.ProcessResources;
import io.actovisor.memory.testing.TestTimeouts;
import io.actovisor.vmm.api.ApiServer;
import io.actovisor.vmm.api.model.BalloonConfig;
import io.actovisor.vmm.api.model.MachineConfig;
import io.actovisor.vmm.api.model.VmConfig;
import io.actovisor.vmm.runtime.VmBuilder;
import io.actovisor.vmm.runtime.VmRuntime;
import com.fasterxml.jackson.databind.JsonNode;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.http.javadsl.ServerBinding;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * The machine's Linux kernel on actovisor (config {@code guest.kind = linux}, kernel and initramfs {@code auto}),
 * one VM for the whole class, booted once (a boot is slow where KVM emulates): the shell answers what is typed,
 * what Linux reports free leaves host memory, Linux's virtio_balloon inflates and deflates with numbers from both
 * sides, deflates on OOM, reports its statistics through the REST API (which also sets its target), a driver that
 * misuses a queue gets DEVICE_NEEDS_RESET, and a panic stops the VM cleanly with the last console lines.
 */
@Tag("kvm")
@Tag("linux-boot")
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
@ExtendWith(EmulatedHostFaultRetry.class)
class LinuxGuestTest implements EmulatedHostFaultRetry.SharedVm {
    /** How long the host's balloon size may take to settle on the target after the guest's counter reached it. */
    static final Duration SETTLE = TestTimeouts.scaled(Duration.ofSeconds(10));
    private static final long MIB = 1 << 20;
    private static final long RAM = 192 * MIB;
    private static final long INFLATE = 32 * MIB;
    /** What free page reporting must give back of a freed 48 MiB file (Linux reports whole 2 MiB blocks only). */
    private static final long REPORTED = 16 * MIB;
    private static ActorTestKit kit;
    private static ProcessResources before;
    private static LinuxVm vm;
    private static Throwable bootFailure;
    private static int boots;

    /** A Linux VM definition with a balloon; the command line keeps the boot short. */
    static String definition(String name) {
        return """
                actovisor.vm {
                  name = %s
                  memory = [
                    { name = ram, base = 0, size = %d MiB }
                    { name = balloon-mmio, kind = mmio, base = "0xd0001000", size = 4 KiB, device = balloon }
                  ]
                  guest { kind = linux, kernel = auto, initrd = auto, cmdline = "%s" }
                  balloon { enabled = true, deflate-on-oom = true, stats-polling-interval = 1s, mmio-base = "0xd0001000" }
                  api.enabled = false
                }
                """.formatted(name, RAM / MIB, LinuxVm.CMDLINE);
    }

    static LinuxVm boot(ActorTestKit kit, String name) {
        VmSpec spec = VmSpecParser.parse(ConfigFactory.parseString(definition(name)));
        long start = System.nanoTime();
        var topology = VmBuilder.topology(spec, BalloonSettings.DEFAULT);
        System.out.printf("Linux %s: kernel and initramfs loaded in %.1f s%n", name, (System.nanoTime() - start) / 1e9);
        LinuxVm vm = new LinuxVm(kit, topology, name);
        System.out.printf("Linux %s: the VM started %.1f s after the start%n", name, (System.nanoTime() - start) / 1e9);
        return vm.awaitShell(start);
    }

    /**
     * Per test, so that a machine without KVM reports each test skipped with the reason, not a class of none; the
     * first test boots the VM the tests share, and a failed boot fails every later test with its cause (unless the
     * emulated KVM host's fault stopped it: {@link EmulatedHostFaultRetry} boots another).
     */
    @BeforeEach
    void start() {
        LinuxVm.requireFacilities();
        LinuxVm.requireHardwareKvm();
        if (bootFailure != null) {
            throw new AssertionError("the shared Linux VM did not boot", bootFailure);
        }
        if (kit == null) {
            kit = ActorTestKit.create();
            before = ProcessResources.snapshot();
        }
        if (vm == null) {
            try {
                vm = boot(kit, "linux-guest" + (boots++ == 0 ? "" : "-" + boots));
            } catch (EmulatedHostFault e) {
                throw e;
            } catch (RuntimeException | Error e) {
                bootFailure = e;
                throw e;
            }
        }
    }

    @Override
    public void replaceVm() {
        if (vm != null && !vm.stopped.get()) {
            vm.close();
        }
        vm = null;
        start();
    }

    @AfterAll
    static void stop() {
        if (vm != null && !vm.stopped.get()) {
            vm.close();
        }
        if (kit != null) {
            kit.shutdownTestKit();
        }
    }

    @Test
    @Order(1)
    void whatIsTypedReachesTheShell() {
        String out = vm.run("echo $((6 * 7)) from $(uname -r)", LinuxVm.COMMAND);
        assertTrue(out.contains("42 from 6."), out);
        String modules = vm.run("cat /proc/modules", LinuxVm.COMMAND);
        assertTrue(modules.contains("virtio_mmio") && modules.contains("virtio_balloon"), modules);
        String device = vm.run("cat /sys/bus/virtio/devices/*/device", LinuxVm.COMMAND);
        assertTrue(device.contains("0x0005"), "the balloon (virtio id 5) was found through ACPI: " + device);
    }

    /**
     * The balloon's status once it holds {@code bytes} (or the last one seen after {@link #SETTLE}): Linux migrates
     * balloon pages when it compacts memory, telling the host the new page's inflate before the old page's deflate,
     * so for a moment the host holds one page more than the guest's counters say.
     */
    private static BalloonActor.BalloonStatus balloonAt(long bytes) {
        long deadline = System.nanoTime() + SETTLE.toNanos();
        BalloonActor.BalloonStatus status = vm.balloonStatus();
        while (status.actualBytes() != bytes && System.nanoTime() < deadline) {
            status = vm.balloonStatus();
        }
        return status;
    }

    /**
     * Linux's free page reporting (negotiated: "Free page reporting enabled") hands the device the 2 MiB blocks it
     * frees, and the balloon discards them: a file the guest writes and removes leaves host memory without any
     * inflate. Nothing holds a pin here, so nothing disables discards.
     */
    @Test
    @Order(2)
    void theChunksLinuxReportsFreeAreDiscarded() throws InterruptedException {
        HostMemory ram = vm.topology.memory().get(0);
        vm.run("dd if=/dev/zero of=/tmp/fill bs=1M count=48 2>/dev/null", LinuxVm.COMMAND);
        long written = ram.residentBytes(ram.hostRange());
        vm.run("rm /tmp/fill", LinuxVm.COMMAND);
        long deadline = System.nanoTime() + LinuxVm.COMMAND.toNanos();
        long now = ram.residentBytes(ram.hostRange());
        while (written - now < REPORTED && System.nanoTime() < deadline) {
            Thread.sleep(500);
            now = ram.residentBytes(ram.hostRange());
        }
        System.out.printf("Linux free page reporting: resident %d MiB with a 48 MiB file, %d MiB after its removal%n",
                written / MIB, now / MIB);
        assertTrue(written - now >= REPORTED, "host resident memory went from " + written + " to " + now
                + " bytes after the guest freed 48 MiB");
        assertEquals(0, vm.balloonStatus().actualBytes(),
                "no page was inflated: the memory left through free page reports");
    }

    @Test
    @Order(3)
    void linuxsBalloonDriverInflatesAndDeflates() {
        HostMemory ram = vm.topology.memory().get(0);
        AddressRange all = ram.hostRange();
        // Touch free memory first (a tmpfs file, then freed), so the pages the balloon takes are resident on the host.
        vm.run("dd if=/dev/zero of=/tmp/fill bs=1M count=48 2>/dev/null; rm /tmp/fill", LinuxVm.COMMAND);
        long inflated = vm.vmstat("balloon_inflate");
        long deflated = vm.vmstat("balloon_deflate");
        long residentBefore = ram.residentBytes(all);
        long pages = INFLATE / 4096;

        vm.balloonTarget(INFLATE);
        vm.awaitVmstat("balloon_inflate", inflated + pages);
        BalloonActor.BalloonStatus status = balloonAt(INFLATE);
        long residentInflated = ram.residentBytes(all);
        System.out.printf("Linux balloon inflate %d MiB: guest balloon_inflate %d -> %d; host actual %d MiB, "
                + "%d pages discarded, resident %d -> %d MiB%n", INFLATE / MIB, inflated, vm.vmstat("balloon_inflate"),
                status.actualBytes() / MIB, status.pagesDiscarded(), residentBefore / MIB, residentInflated / MIB);
        assertEquals(INFLATE, status.actualBytes());
        assertTrue(status.pagesDiscarded() >= pages, "discarded " + status.pagesDiscarded());
        assertTrue(residentBefore - residentInflated >= INFLATE / 2, "host resident memory went from "
                + residentBefore + " to " + residentInflated + " bytes");

        TestProbe<VirtioBalloonActor.Statistics> stats = kit.createTestProbe();
        vm.components.devices().get("balloon").tell(new VirtioBalloonActor.GetStatistics(stats.ref()));
        VirtioBalloonActor.Statistics s = stats.receiveMessage();
        assertTrue(s.latest().isPresent() && !s.latest().get().values().isEmpty(),
                "the guest's driver reported its statistics: " + s);
        assertEquals(0, s.eventFails());

        vm.balloonTarget(0);
        vm.awaitVmstat("balloon_deflate", deflated + pages);
        System.out.printf("Linux balloon deflate: guest balloon_deflate %d -> %d; host actual %d MiB%n", deflated,
                vm.vmstat("balloon_deflate"), vm.balloonStatus().actualBytes() / MIB);
        assertEquals(0, vm.balloonStatus().actualBytes());
    }

    /** A {@code /proc/meminfo} field of the guest, in bytes. */
    private static long meminfo(String field) {
        Matcher m = Pattern.compile(field + ":\\s+(\\d+) kB").matcher(vm.run("cat /proc/meminfo", LinuxVm.COMMAND));
        assertTrue(m.find(), "no " + field + " in /proc/meminfo");
        return Long.parseLong(m.group(1)) * 1024;
    }

    /**
     * Deflate-on-OOM (negotiated: the definition sets {@code deflate-on-oom = true}): the host inflates the balloon to
     * all but 16 MiB of what the guest has free, then a program in the guest (busybox {@code dd} into the
     * initramfs' tmpfs, which cannot be swapped or reclaimed) writes 48 MiB. The allocator runs out, and Linux's
     * virtio_balloon OOM notifier deflates (1 MiB per call) instead of the OOM killer killing anything: the guest's
     * {@code balloon_deflate} rises, the device hands the deflates to the balloon (its actual size drops below the
     * target, by exactly the pages Linux counted), and the program completes.
     */
    @Test
    @Order(4)
    void linuxDeflatesTheBalloonWhenAProgramAllocatesPastWhatIsLeft() {
        long free = meminfo("MemFree");
        long target = (free - 16 * MIB) / (2 * MIB) * (2 * MIB);
        long inflated = vm.vmstat("balloon_inflate");
        vm.balloonTarget(target);
        vm.awaitVmstat("balloon_inflate", inflated + target / 4096);
        BalloonActor.BalloonStatus full = balloonAt(target);
        assertEquals(target, full.actualBytes());
        long freeInflated = meminfo("MemFree");
        long deflated = vm.vmstat("balloon_deflate");

        long file = 48 * MIB;
        String out = vm.run("dd if=/dev/zero of=/tmp/oom bs=1M count=" + file / MIB + " 2>&1; wc -c < /tmp/oom",
                LinuxVm.COMMAND);
        long deflatedAfter = vm.vmstat("balloon_deflate");
        BalloonActor.BalloonStatus after = vm.balloonStatus();
        String killed = vm.run("dmesg | grep -c -i 'killed process'", LinuxVm.COMMAND).trim();
        System.out.printf("Linux deflate-on-oom: guest MemFree %d MiB, balloon target %d MiB, MemFree %d MiB "
                + "inflated; a %d MiB file: guest balloon_deflate %d -> %d (%d MiB), host actual %d -> %d MiB "
                + "(target %d MiB), processes the OOM killer killed: %s; dd said: %s%n", free / MIB, target / MIB,
                freeInflated / MIB, file / MIB, deflated, deflatedAfter, (deflatedAfter - deflated) * 4096 / MIB,
                full.actualBytes() / MIB, after.actualBytes() / MIB, after.targetBytes() / MIB, killed,
                out.replace('\n', ' '));
        assertTrue(out.contains(file / MIB + "+0 records out") && out.contains(Long.toString(file)),
                "the program completed: " + out);
        assertTrue(deflatedAfter > deflated, "Linux deflated on OOM: balloon_deflate " + deflated + " -> "
                + deflatedAfter);
        assertEquals(target, after.targetBytes(), "the target stays; the guest deflated on its own");
        assertEquals((deflatedAfter - deflated) * 4096, target - after.actualBytes(),
                "the host's actual size dropped by the pages the guest deflated");
        assertEquals("0", killed, "no process was killed: the balloon gave the memory");

        vm.run("rm /tmp/oom", LinuxVm.COMMAND);
        vm.balloonTarget(0);
        vm.awaitVmstat("balloon_deflate", deflated + target / 4096);
        assertEquals(0, vm.balloonStatus().actualBytes());
    }

    private static JsonNode get(HttpClient client, String api, String token, String path) throws Exception {
        HttpResponse<String> reply = client.send(HttpRequest.newBuilder(URI.create(api + path))
                .header("Authorization", "Bearer " + token).timeout(Duration.ofSeconds(30)).GET().build(),
                HttpResponse.BodyHandlers.ofString());
        assertEquals(200, reply.statusCode(), "GET " + path + ": " + reply.body());
        return ApiServer.JSON.readTree(reply.body());
    }

    private static void patchBalloon(HttpClient client, String api, String token, long mib) throws Exception {
        HttpResponse<String> reply = client.send(HttpRequest.newBuilder(URI.create(api + "/balloon"))
                .header("Authorization", "Bearer " + token).header("Content-Type", "application/json")
                .timeout(Duration.ofSeconds(30))
                .method("PATCH", HttpRequest.BodyPublishers.ofString("{\"amount_mib\": " + mib + "}")).build(),
                HttpResponse.BodyHandlers.ofString());
        assertEquals(204, reply.statusCode(), "PATCH /balloon " + mib + " MiB: " + reply.body());
    }

    private static void throughTheApi(ActorSystem<Void> http) throws Exception {
        VmConfig config = new VmConfig("linux-guest", new MachineConfig(1, RAM / MIB, false, false),
                new BalloonConfig(0, true, 1), "linux", List.of());
        VmRuntime runtime = new VmRuntime(kit.system(), vm.vm, vm.components, Map.of(), config,
                Duration.ofSeconds(10));
        String token = UUID.randomUUID().toString();
        ServerBinding binding = ApiServer.bind(http, runtime, "127.0.0.1", 0, false, token, Optional.empty())
                .toCompletableFuture().get(30, TimeUnit.SECONDS);
        String api = "http://127.0.0.1:" + binding.localAddress().getPort();
        HttpClient client = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();

        JsonNode first = get(client, api, token, "/balloon/statistics");
        // The driver answers every poll (1 s): wait for a report newer than the meminfo read below.
        long total = meminfo("MemTotal");
        long free = meminfo("MemFree");
        long available = meminfo("MemAvailable");
        JsonNode stats = first;
        long deadline = System.nanoTime() + LinuxVm.COMMAND.toNanos();
        while (stats.path("stats_updates").asLong() <= first.path("stats_updates").asLong() + 1
                && System.nanoTime() < deadline) {
            Thread.sleep(500);
            stats = get(client, api, token, "/balloon/statistics");
        }
        System.out.printf("Linux over REST: GET /balloon/statistics total_memory %d, free_memory %d, "
                + "available_memory %d bytes (stats_updates %d); guest /proc/meminfo MemTotal %d, MemFree %d, "
                + "MemAvailable %d bytes%n", stats.path("total_memory").asLong(), stats.path("free_memory").asLong(),
                stats.path("available_memory").asLong(), stats.path("stats_updates").asLong(), total, free,
                available);
        assertTrue(stats.path("stats_updates").asLong() > first.path("stats_updates").asLong() + 1,
                "the guest keeps reporting: " + stats);
        assertEquals(total, stats.path("total_memory").asLong(), "total_memory is the guest's MemTotal: " + stats);
        assertTrue(Math.abs(stats.path("free_memory").asLong() - free) <= 32 * MIB,
                "free_memory within 32 MiB of the guest's MemFree " + free + ": " + stats);
        assertTrue(Math.abs(stats.path("available_memory").asLong() - available) <= 32 * MIB,
                "available_memory within 32 MiB of the guest's MemAvailable " + available + ": " + stats);
        assertTrue(stats.path("free_memory").asLong() > 0 && stats.path("free_memory").asLong() < total, stats
                .toString());
        assertEquals(0, stats.path("event_fails").asLong(), stats.toString());

        long inflated = vm.vmstat("balloon_inflate");
        long deflated = vm.vmstat("balloon_deflate");
        long mib = 16;
        patchBalloon(client, api, token, mib);
        vm.awaitVmstat("balloon_inflate", inflated + mib * MIB / 4096);
        JsonNode balloon = get(client, api, token, "/balloon");
        long inflatedAfter = vm.vmstat("balloon_inflate");
        assertEquals(mib, balloon.path("amount_mib").asLong(), balloon.toString());
        assertEquals(mib * MIB, balloon.path("actual_bytes").asLong(), balloon.toString());
        patchBalloon(client, api, token, 0);
        vm.awaitVmstat("balloon_deflate", deflated + mib * MIB / 4096);
        JsonNode back = get(client, api, token, "/balloon/statistics");
        System.out.printf("Linux over REST: PATCH /balloon %d MiB: guest balloon_inflate %d -> %d, GET /balloon "
                + "actual_bytes %d; PATCH /balloon 0: balloon_deflate %d -> %d, actual_mib %d%n", mib, inflated,
                inflatedAfter, balloon.path("actual_bytes").asLong(), deflated, vm.vmstat("balloon_deflate"),
                back.path("actual_mib").asLong());
        assertEquals(0, back.path("actual_mib").asLong(), back.toString());

        binding.unbind().toCompletableFuture().get(30, TimeUnit.SECONDS);
    }

    /**
     * The REST API in front of a Linux guest, through the real server ({@code ApiServer} over the VM's
     * {@code VmRuntime}, bound on a free loopback port) and a real HTTP client: {@code GET /balloon/statistics}
     * answers the statistics Linux's driver reported (checked against the guest's own {@code /proc/meminfo}), and
     * {@code PATCH /balloon} makes Linux inflate and deflate. The server runs in an actor system of its own, and
     * the test checks that the server and the client leave no fd behind.
     */
    @Test
    @Order(5)
    void theRestApiShowsLinuxsStatisticsAndDrivesItsBalloon() throws Exception {
        ProcessResources withoutApi = ProcessResources.snapshot();
        ActorSystem<Void> http = ActorSystem.create(Behaviors.empty(), "linux-guest-api");
        try {
            throughTheApi(http);
        } finally {
            http.terminate();
            http.getWhenTerminated().toCompletableFuture().get(30, TimeUnit.SECONDS);
        }
        // java.net.http's client (Java 17) has no close(): its selector thread ends once the client is unreachable.
        Map<Integer, String> left = ProcessResources.snapshot().nativeFdsOpenedSince(withoutApi);
        long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
        while (!left.isEmpty() && System.nanoTime() < deadline) {
            System.gc();
            Thread.sleep(500);
            left = ProcessResources.snapshot().nativeFdsOpenedSince(withoutApi);
        }
        assertTrue(left.isEmpty(), "the API server and client left fds open: " + left);
    }

    /**
     * A driver that misuses a queue gets the device's error, never a host crash: the guest releases the balloon's
     * virtio-mmio window from Linux's driver (unbinding {@code virtio-mmio}, which resets the device), then, as a
     * driver of its own through {@code /dev/mem} (busybox {@code devmem}), notifies queue 0 before negotiating
     * anything. The device's status register then shows {@code DEVICE_NEEDS_RESET} (0x40); the VM keeps running, and
     * Linux's driver, bound again, resets the device and inflates and deflates as before.
     */
    @Test
    @Order(6)
    void aDriverThatMisusesAQueueGetsDeviceNeedsReset() {
        String window = "0xd0001000";
        String unbind = vm.run("cd /sys/bus/platform/drivers/virtio-mmio && for d in LNRO0005*; do echo $d > unbind "
                + "&& echo unbound $d; done; cd /", LinuxVm.COMMAND);
        assertTrue(unbind.contains("unbound LNRO0005"), "Linux's virtio-mmio driver let the window go: " + unbind);
        String before = vm.run("devmem 0xd0001070 32", LinuxVm.COMMAND).trim();
        vm.run("devmem 0xd0001050 32 0", LinuxVm.COMMAND);
        String after = vm.run("devmem 0xd0001070 32", LinuxVm.COMMAND).trim();
        System.out.printf("Linux guest as a misbehaving driver of the balloon at %s: status %s before, %s after a "
                + "notify of queue 0 before FEATURES_OK%n", window, lastLine(before), lastLine(after));
        assertEquals(0, Long.decode(lastLine(before)) & 0x40, "no DEVICE_NEEDS_RESET before: " + before);
        assertEquals(0x40, Long.decode(lastLine(after)) & 0x40, "DEVICE_NEEDS_RESET after the misuse: " + after);
        assertEquals(0, vm.balloonStatus().actualBytes(), "the host still answers");

        String bind = vm.run("cd /sys/bus/platform/drivers/virtio-mmio && for d in /sys/bus/platform/devices/LNRO0005*;"
                + " do echo ${d##*/} > bind; done; cd /; cat /sys/bus/virtio/devices/*/status", LinuxVm.COMMAND);
        assertTrue(bind.contains("0x0000000f") || bind.contains("0x0000000F"),
                "Linux's driver reset the device and set DRIVER_OK again: " + bind);
        long inflated = vm.vmstat("balloon_inflate");
        long deflated = vm.vmstat("balloon_deflate");
        vm.balloonTarget(8 * MIB);
        vm.awaitVmstat("balloon_inflate", inflated + 8 * MIB / 4096);
        assertEquals(8 * MIB, vm.balloonStatus().actualBytes());
        vm.balloonTarget(0);
        vm.awaitVmstat("balloon_deflate", deflated + 8 * MIB / 4096);
        assertEquals(0, vm.balloonStatus().actualBytes());
    }

    private static String lastLine(String out) {
        List<String> lines = LinuxVm.lines(out.trim());
        return lines.get(lines.size() - 1).trim();
    }

    @Test
    @Order(10)
    void aPanicIsReportedWithTheLastConsoleLinesAndTheVmStopsCleanly() {
        HostMemory ram = vm.topology.memory().get(0);
        vm.type("echo c > /proc/sysrq-trigger");
        LinuxGuestEvent.Panicked panicked = awaitPanic();
        assertTrue(panicked.lastLines().stream().anyMatch(l -> l.contains("Kernel panic - not syncing")),
                panicked.lastLines().toString());
        assertTrue(panicked.lastLines().stream().anyMatch(l -> l.contains("sysrq")), panicked.lastLines().toString());
        TestProbe<Object> watcher = kit.createTestProbe();
        watcher.expectTerminated(vm.vm, Duration.ofSeconds(30));
        assertTrue(ram.isClosed(), "the VM released its RAM");
        assertTrue(ProcessResources.snapshot().nativeFdsOpenedSince(before).isEmpty(), "no KVM fd left: "
                + ProcessResources.snapshot().nativeFdsOpenedSince(before));
    }

    /**
     * The panic report, within {@link LinuxVm#COMMAND}; a VM that stops without one fails at once with what its console
     * printed (not after the whole wait).
     */
    private static LinuxGuestEvent.Panicked awaitPanic() {
        long deadline = System.nanoTime() + LinuxVm.COMMAND.toNanos();
        while (true) {
            boolean stoppedBefore = vm.stopped.get();
            try {
                return vm.events.expectMessageClass(LinuxGuestEvent.Panicked.class, Duration.ofSeconds(5));
            } catch (AssertionError none) {
                if (stoppedBefore || System.nanoTime() > deadline) {
                    throw new AssertionError("no panic report " + (stoppedBefore ? "from the stopped VM" : "within "
                            + LinuxVm.COMMAND) + "; the console printed:\n" + LinuxVm.tail(vm.output(), 3000), none);
                }
            }
        }
    }
}
