package io.actovisor.it.linux;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.ConfigFactory;
import io.actovisor.actors.balloon.BalloonActor;
import io.actovisor.actors.balloon.BalloonSettings;
import io.actovisor.actors.balloon.VirtioBalloonActor;
import io.actovisor.actors.linux.LinuxGuestEvent;
import io.actovisor.config.VmSpec;
import io.actovisor.config.VmSpecParser;
import io.actovisor.devices.boot.linux.Initramfs;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.sys.ProcessResources;
import io.actovisor.memory.testing.TestTimeouts;
import io.actovisor.vmm.runtime.VmBuilder;
import java.time.Duration;
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

/**
 * The machine's Linux kernel on actovisor (config {@code guest.kind = linux}, kernel and initramfs {@code auto}),
 * one VM for the whole class, booted once (a boot is slow where KVM emulates): the shell answers what is typed,
 * what Linux reports free leaves host memory, Linux's virtio_balloon inflates and deflates with numbers from both
 * sides, and a panic stops the VM cleanly with the last console lines.
 */
@Tag("kvm")
@Tag("linux-boot")
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class LinuxGuestTest {
    static final Duration BOOT = TestTimeouts.scaled(Duration.ofMinutes(20));
    static final Duration COMMAND = TestTimeouts.scaled(Duration.ofMinutes(3));
    private static final long MIB = 1 << 20;
    private static final long RAM = 192 * MIB;
    private static final long INFLATE = 32 * MIB;
    /** What free page reporting must give back of a freed 48 MiB file (Linux reports whole 2 MiB blocks only). */
    private static final long REPORTED = 16 * MIB;
    private static ActorTestKit kit;
    private static ProcessResources before;
    private static LinuxVm vm;
    private static Throwable bootFailure;

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
        Matcher ready = vm.await(Pattern.quote(Initramfs.READY) + " after ([0-9.]+) s", BOOT);
        System.out.printf("Linux %s: init ready after %.1f s wall clock, %s s of guest uptime%n", name,
                (System.nanoTime() - start) / 1e9, ready.group(1));
        vm.await(LinuxVm.PROMPT, COMMAND);
        return vm;
    }

    /**
     * Per test, so that a machine without KVM reports each test skipped with the reason, not a class of none; the
     * first test boots the VM the tests share, and a failed boot fails every later test with its cause.
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
            try {
                vm = boot(kit, "linux-guest");
            } catch (RuntimeException | AssertionError e) {
                bootFailure = e;
                throw e;
            }
        }
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
        String out = vm.run("echo $((6 * 7)) from $(uname -r)", COMMAND);
        assertTrue(out.contains("42 from 6."), out);
        String modules = vm.run("cat /proc/modules", COMMAND);
        assertTrue(modules.contains("virtio_mmio") && modules.contains("virtio_balloon"), modules);
        String device = vm.run("cat /sys/bus/virtio/devices/*/device", COMMAND);
        assertTrue(device.contains("0x0005"), "the balloon (virtio id 5) was found through ACPI: " + device);
    }

    private static long vmstat(String field) {
        Matcher m = Pattern.compile(field + " (\\d+)").matcher(vm.run("grep balloon /proc/vmstat", COMMAND));
        assertTrue(m.find(), "no " + field + " in /proc/vmstat");
        return Long.parseLong(m.group(1));
    }

    private static BalloonActor.BalloonStatus balloon() {
        TestProbe<BalloonActor.BalloonStatus> probe = kit.createTestProbe();
        vm.components.balloon().orElseThrow().tell(new BalloonActor.GetStatus(probe.ref()));
        return probe.receiveMessage();
    }

    private static void target(long bytes) {
        TestProbe<BalloonActor.TargetResult> set = kit.createTestProbe();
        vm.components.balloon().orElseThrow().tell(new BalloonActor.SetTarget(bytes, set.ref()));
        assertInstanceOf(BalloonActor.TargetSet.class, set.receiveMessage());
    }

    private static void awaitVmstat(String field, long atLeast) {
        long deadline = System.nanoTime() + COMMAND.toNanos();
        long now = vmstat(field);
        while (now < atLeast && System.nanoTime() < deadline) {
            now = vmstat(field);
        }
        assertTrue(now >= atLeast, field + " is " + now + ", expected at least " + atLeast);
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
        vm.run("dd if=/dev/zero of=/tmp/fill bs=1M count=48 2>/dev/null", COMMAND);
        long written = ram.residentBytes(ram.hostRange());
        vm.run("rm /tmp/fill", COMMAND);
        long deadline = System.nanoTime() + COMMAND.toNanos();
        long now = ram.residentBytes(ram.hostRange());
        while (written - now < REPORTED && System.nanoTime() < deadline) {
            Thread.sleep(500);
            now = ram.residentBytes(ram.hostRange());
        }
        System.out.printf("Linux free page reporting: resident %d MiB with a 48 MiB file, %d MiB after its removal%n",
                written / MIB, now / MIB);
        assertTrue(written - now >= REPORTED, "host resident memory went from " + written + " to " + now
                + " bytes after the guest freed 48 MiB");
        assertEquals(0, balloon().actualBytes(), "no page was inflated: the memory left through free page reports");
    }

    @Test
    @Order(3)
    void linuxsBalloonDriverInflatesAndDeflates() {
        HostMemory ram = vm.topology.memory().get(0);
        AddressRange all = ram.hostRange();
        // Touch free memory first (a tmpfs file, then freed), so the pages the balloon takes are resident on the host.
        vm.run("dd if=/dev/zero of=/tmp/fill bs=1M count=48 2>/dev/null; rm /tmp/fill", COMMAND);
        long inflated = vmstat("balloon_inflate");
        long deflated = vmstat("balloon_deflate");
        long residentBefore = ram.residentBytes(all);
        long pages = INFLATE / 4096;

        target(INFLATE);
        awaitVmstat("balloon_inflate", inflated + pages);
        BalloonActor.BalloonStatus status = balloon();
        long residentInflated = ram.residentBytes(all);
        System.out.printf("Linux balloon inflate %d MiB: guest balloon_inflate %d -> %d; host actual %d MiB, "
                + "%d pages discarded, resident %d -> %d MiB%n", INFLATE / MIB, inflated, vmstat("balloon_inflate"),
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

        target(0);
        awaitVmstat("balloon_deflate", deflated + pages);
        System.out.printf("Linux balloon deflate: guest balloon_deflate %d -> %d; host actual %d MiB%n", deflated,
                vmstat("balloon_deflate"), balloon().actualBytes() / MIB);
        assertEquals(0, balloon().actualBytes());
    }

    @Test
    @Order(4)
    void aPanicIsReportedWithTheLastConsoleLinesAndTheVmStopsCleanly() {
        HostMemory ram = vm.topology.memory().get(0);
        vm.type("echo c > /proc/sysrq-trigger");
        LinuxGuestEvent.Panicked panicked = vm.events.expectMessageClass(LinuxGuestEvent.Panicked.class, COMMAND);
        assertTrue(panicked.lastLines().stream().anyMatch(l -> l.contains("Kernel panic - not syncing")),
                panicked.lastLines().toString());
        assertTrue(panicked.lastLines().stream().anyMatch(l -> l.contains("sysrq")), panicked.lastLines().toString());
        TestProbe<Object> watcher = kit.createTestProbe();
        watcher.expectTerminated(vm.vm, Duration.ofSeconds(30));
        assertTrue(ram.isClosed(), "the VM released its RAM");
        assertTrue(ProcessResources.snapshot().nativeFdsOpenedSince(before).isEmpty(), "no KVM fd left: "
                + ProcessResources.snapshot().nativeFdsOpenedSince(before));
    }
}
