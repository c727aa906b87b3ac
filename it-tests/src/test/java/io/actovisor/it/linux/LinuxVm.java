package io.actovisor.it.linux;

import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.actors.balloon.BalloonActor;
import io.actovisor.actors.kvm.VcpuHandle;
import io.actovisor.actors.linux.ConsoleActor;
import io.actovisor.actors.linux.LinuxGuest;
import io.actovisor.actors.linux.LinuxGuestEvent;
import io.actovisor.actors.vm.VmActor;
import io.actovisor.actors.vm.VmTopology;
import io.actovisor.devices.boot.linux.Initramfs;
import io.actovisor.kernel.kvm.Kvm;
import io.actovisor.kernel.kvm.KvmAbi;
import io.actovisor.kernel.kvm.KvmVcpu;
import io.actovisor.memory.testing.NativeRequirement;
import io.actovisor.memory.testing.TestTimeouts;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Optional;
import java.util.function.Function;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.eventstream.EventStream;

/** A Linux guest on actovisor for the tests: its VM actor, its console as text, and typing into it. */
final class LinuxVm implements AutoCloseable {
    /**
     * The tests' kernel command line: the example's without {@code quiet} and with an early console on COM1 (so a
     * boot that stops shows how far it got: the console lines reach the test log through ConsoleActor's DEBUG
     * logger), plus what shortens a boot on a slow virtual CPU (no crypto self-tests, one UART to probe, no
     * speculation mitigations to patch in).
     */
    static final String CMDLINE = "console=ttyS0 earlycon=uart8250,io,0x3f8 reboot=k pci=off mitigations=off "
            + "cryptomgr.notests 8250.nr_uarts=1 random.trust_cpu=on";

    /** The shell prompt busybox prints for root. */
    static final String PROMPT = "# ";

    /**
     * How long the tests wait for a boot and for a shell command, times the timeout factor. Where KVM runs the guest's
     * kernel (natively, or in the emulated KVM host, where the factor is 10, a boot takes 14-43 s and the longest
     * command well under a minute) a guest that stops making progress fails its test within minutes, inside the
     * emulated host's session limit (25 min without a report), with the vCPUs' state and the console's end. On
     * KVM-PVM, where only {@code ACTOVISOR_LINUX_ON_EMULATED_KVM=1} gets here and KVM emulates the guest kernel, a
     * boot takes tens of minutes.
     */
    static final Duration BOOT = TestTimeouts.scaled(Kvm.emulatesGuestKernels() ? Duration.ofMinutes(20)
            : Duration.ofSeconds(60));
    static final Duration COMMAND = TestTimeouts.scaled(Kvm.emulatesGuestKernels() ? Duration.ofMinutes(5)
            : Duration.ofSeconds(45));

    /** Whether this JVM runs in it-tests' emulated KVM host (GuestSession sets the property there). */
    static final boolean IN_EMULATED_HOST = Boolean.getBoolean("actovisor.kvm.emulated-host");
    /**
     * How long a wait in the emulated KVM host lets the console stay silent before it looks for the host's fault
     * ({@link #hostStateLeak}); a guest that stopped that way never prints again, so the wait fails then, not at
     * its timeout.
     */
    static final Duration QUIET_CHECK = Duration.ofSeconds(30);
    /** How often a wait in the emulated KVM host reads its trace ({@link WorldSwitchTrace}). */
    static final Duration TRACE_CHECK = Duration.ofSeconds(5);
    /** How long a failure report waits for a vCPU to leave {@code KVM_RUN} before it says it did not. */
    static final Duration PAUSE_WAIT = Duration.ofSeconds(10);
    private static final String NOT_PAUSED = "did not pause within " + PAUSE_WAIT.toSeconds() + " s";

    final ActorTestKit kit;
    final VmTopology topology;
    final ActorRef<VmActor.Command> vm;
    final VmActor.Components components;
    final TestProbe<LinuxGuestEvent> events;
    private final TestProbe<LinuxGuestEvent.ConsoleOutput> console;
    private final StringBuilder output = new StringBuilder();
    final TestProbe<io.actovisor.actors.events.ActovisorEvent.GuestConsoleLine> lines;
    private int consumed;
    /** Names for guest addresses in failure reports: the kernel's from its System.map; tests may add the modules'. */
    final GuestSymbols symbols = newestKernel().map(k -> GuestSymbols.ofKernel(GuestSymbols.systemMapOf(k)))
            .orElseGet(() -> GuestSymbols.ofKernel(Path.of("/nonexistent")));
    final java.util.concurrent.atomic.AtomicBoolean stopped = new java.util.concurrent.atomic.AtomicBoolean();
    /** The emulated host's record of guest entries at its own world switch, where it can be kept. */
    private final Optional<WorldSwitchTrace> trace = WorldSwitchTrace.inEmulatedHost();

    LinuxVm(ActorTestKit kit, VmTopology topology, String name) {
        this.kit = kit;
        this.topology = topology;
        this.console = kit.createTestProbe();
        this.events = kit.createTestProbe();
        this.lines = kit.createTestProbe();
        kit.system().eventStream().tell(new EventStream.Subscribe<>(LinuxGuestEvent.ConsoleOutput.class,
                console.ref()));
        kit.system().eventStream().tell(new EventStream.Subscribe<>(LinuxGuestEvent.Panicked.class, events.ref().narrow()));
        kit.system().eventStream().tell(new EventStream.Subscribe<>(LinuxGuestEvent.ResetRequested.class,
                events.ref().narrow()));
        kit.system().eventStream().tell(new EventStream.Subscribe<>(
                io.actovisor.actors.events.ActovisorEvent.GuestConsoleLine.class, lines.ref()));
        trace.ifPresent(WorldSwitchTrace::clear);
        vm = kit.spawn(VmActor.create(topology), name);
        kit.spawn(org.apache.pekko.actor.typed.javadsl.Behaviors.<Void>setup(context -> {
            context.watch(vm);
            return org.apache.pekko.actor.typed.javadsl.Behaviors.receive(Void.class)
                    .onSignal(org.apache.pekko.actor.typed.Terminated.class, t -> {
                        stopped.set(true);
                        return org.apache.pekko.actor.typed.javadsl.Behaviors.stopped();
                    }).build();
        }));
        TestProbe<VmActor.StartResult> started = kit.createTestProbe();
        vm.tell(new VmActor.Start(started.ref()));
        VmActor.StartResult result = started.receiveMessage(Duration.ofSeconds(60));
        if (result instanceof VmActor.StartFailed failed) {
            throw new AssertionError("the VM did not start: " + failed.reason());
        }
        components = ((VmActor.Started) result).components();
    }

    /** Skip (or fail under ACTOVISOR_REQUIRE_NATIVE=1) unless KVM, a kernel and a static busybox are here. */
    static void requireFacilities() {
        NativeRequirement.requireKvm(Kvm.unavailabilityCause());
        NativeRequirement.require("a Linux kernel in /boot (Debian package linux-image-amd64)",
                newestKernel().isPresent() ? Optional.empty()
                        : Optional.of("no readable /boot/vmlinuz-* with /lib/modules/<release>/modules.dep"));
        NativeRequirement.require("a static busybox (Debian package busybox-static)",
                Initramfs.findBusybox().isPresent() ? Optional.empty()
                        : Optional.of("no statically linked /bin/busybox or /usr/bin/busybox"));
    }

    /**
     * Skip a test that boots Linux where KVM emulates the guest kernel (KVM-PVM): there a stock kernel's boot takes
     * tens of minutes of emulation and stops on instructions KVM's emulator lacks (docs/linux-guest.md). In a
     * {@code mvn verify} such a host never gets here: these classes ({@code linux-boot}) run in it-tests' emulated
     * KVM host instead, whose nested KVM (SVM with nested paging) boots them. Set
     * {@code ACTOVISOR_LINUX_ON_EMULATED_KVM=1} to try anyway.
     */
    static void requireHardwareKvm() {
        boolean forced = "1".equals(System.getenv("ACTOVISOR_LINUX_ON_EMULATED_KVM"));
        NativeRequirement.optional("hardware-assisted KVM for a Linux boot", Kvm.emulatesGuestKernels() && !forced
                ? Optional.of("/dev/kvm here is KVM-PVM (/sys/module/kvm_pvm), which runs a stock kernel through "
                        + "shadow paging and instruction emulation (a boot takes tens of minutes); set "
                        + "ACTOVISOR_LINUX_ON_EMULATED_KVM=1 to boot anyway") : Optional.empty());
    }

    static Optional<Path> newestKernel() {
        try (Stream<Path> files = Files.list(Path.of("/boot"))) {
            return files.filter(p -> p.getFileName().toString().startsWith("vmlinuz-"))
                    .filter(Files::isReadable)
                    .filter(p -> Files.exists(Initramfs.moduleTreeOf(p).resolve("modules.dep")))
                    .max(Comparator.comparing(p -> p.getFileName().toString()));
        } catch (Exception e) {
            return Optional.empty();
        }
    }

    /**
     * Wait until the init is ready and the shell prompts (printing how long that took since {@code start}, a
     * {@link System#nanoTime}), then read the loaded modules' text symbols from the guest's {@code /proc/kallsyms},
     * so that a hang's report names the vCPU's rip; a VM that does not get there is stopped.
     */
    LinuxVm awaitShell(long start) {
        try {
            Matcher ready = await(Pattern.quote(Initramfs.READY) + " after ([0-9.]+) s", BOOT);
            System.out.printf("Linux %s: init ready after %.1f s wall clock, %s s of guest uptime%n",
                    topology.name(), (System.nanoTime() - start) / 1e9, ready.group(1));
            await(PROMPT, COMMAND);
            int modules = symbols.add(run("grep -E '^[0-9a-f]+ [tT] .*\\[' /proc/kallsyms", COMMAND));
            System.out.printf("Linux %s: %d module text symbols, %d in all%n", topology.name(), modules,
                    symbols.size());
            return this;
        } catch (RuntimeException | Error e) {
            if (!stopped.get()) {
                close();
            }
            throw e;
        }
    }

    /** Everything the console printed so far. */
    String output() {
        drain(Duration.ZERO);
        return output.toString();
    }

    private void drain(Duration wait) {
        Optional<LinuxGuestEvent.ConsoleOutput> chunk;
        do {
            try {
                chunk = Optional.of(wait.isZero() ? console.receiveMessage(Duration.ofMillis(1))
                        : console.receiveMessage(wait));
            } catch (AssertionError none) {
                chunk = Optional.empty();
            }
            chunk.ifPresent(c -> output.append(c.text()));
            wait = Duration.ZERO;
        } while (chunk.isPresent());
    }

    /**
     * Wait until the console prints something matching {@code regex} after what earlier awaits consumed; returns the
     * match.
     */
    Matcher await(String regex, Duration timeout) {
        Pattern pattern = Pattern.compile(regex);
        long deadline = System.nanoTime() + timeout.toNanos();
        long lastCheck = System.nanoTime();
        long lastTrace = System.nanoTime();
        int printed = output.length();
        while (true) {
            Matcher m = pattern.matcher(output);
            if (m.find(consumed)) {
                consumed = m.end();
                return m;
            }
            Optional<String> fault = Optional.empty();
            if (trace.isPresent() && (stopped.get() || System.nanoTime() - lastTrace > TRACE_CHECK.toNanos())) {
                lastTrace = System.nanoTime();
                fault = trace.get().entryAtTheHostsRip();
            }
            if (output.length() != printed) {
                printed = output.length();
                lastCheck = System.nanoTime();
            } else if (fault.isEmpty() && IN_EMULATED_HOST && !stopped.get()
                    && System.nanoTime() - lastCheck > QUIET_CHECK.toNanos()) {
                lastCheck = System.nanoTime();
                fault = hostStateLeak();
            }
            if (fault.isPresent()) {
                throw new EmulatedHostFault(fault.get() + "; waiting for the console to print " + regex
                        + (stopped.get() ? "; the VM stopped" : "; " + samples(3) + "; " + registers())
                        + trace.map(t -> "; " + t.recent(20)).orElse("") + "\nit printed:\n"
                        + tail(output.toString(), 2000));
            }
            long left = deadline - System.nanoTime();
            if (stopped.get()) {
                drain(Duration.ofMillis(300));
                throw new AssertionError("the VM stopped before its console printed anything matching " + regex
                        + trace.map(t -> "; " + t.recent(40)).orElse("") + "\nit printed:\n"
                        + tail(output.toString(), 3000));
            }
            if (left <= 0) {
                throw new AssertionError("the console printed nothing matching " + regex + " within " + timeout
                        + "; vCPU exits " + components.vcpus().stream().map(v -> v.counters().snapshot()
                                + " unclaimed " + v.counters().unclaimed()).toList()
                        + "; " + samples(5) + "; " + registers() + trace.map(t -> "; " + t.recent(40)).orElse("")
                        + "; lines "
                        + lines.receiveSeveralMessages(1, Duration.ofSeconds(1))
                        + "; it printed:\n" + tail(output.toString(), 3000));
            }
            drain(Duration.ofNanos(Math.min(left, Duration.ofSeconds(1).toNanos())));
        }
    }

    /**
     * Where the vCPUs are, {@code n} times a second apart (for failure reports): each is paused, its rip (named by
     * {@link #symbols}), rflags and exit counters read, and resumed; a guest spinning in one loop shows the same few
     * symbols with its counters still or moving, an idle guest its idle loop.
     */
    String samples(int n) {
        StringBuilder out = new StringBuilder("samples:");
        for (int i = 0; i < n; i++) {
            for (VcpuHandle v : components.vcpus()) {
                out.append("\n  vCPU ").append(v.vcpu().id()).append(' ').append(whilePaused(v, vcpu -> {
                    var regs = vcpu.registers();
                    return "rip=0x" + Long.toHexString(regs.rip()) + " (" + symbols.describe(regs.rip())
                            + ") rflags=0x" + Long.toHexString(regs.values()[17]) + " exits " + v.counters().snapshot();
                }).orElse(NOT_PAUSED));
            }
            try {
                Thread.sleep(1000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                break;
            }
        }
        return out.append('\n').toString();
    }

    /**
     * The emulated KVM host's fault, if the vCPUs show it ({@link EmulatedHostFault#diagnose}): each vCPU is paused,
     * its rip and CR3 read, and resumed. A vCPU that does not pause is reported by the wait's own timeout.
     */
    Optional<String> hostStateLeak() {
        for (VcpuHandle v : components.vcpus()) {
            Optional<String> leak = whilePaused(v, vcpu -> {
                try (var sregs = vcpu.specialRegisters()) {
                    return EmulatedHostFault.diagnose(vcpu.registers().rip(), sregs.getLong(KvmAbi.SREGS_CR3),
                            topology.ramBytes(), EmulatedHostFault.hostWorldSwitch());
                }
            }).flatMap(found -> found);
            if (leak.isPresent()) {
                return Optional.of("vCPU " + v.vcpu().id() + ": " + leak.get());
            }
        }
        return Optional.empty();
    }

    /** The vCPUs' registers, each read while it is paused (for failure reports). */
    String registers() {
        StringBuilder out = new StringBuilder();
        for (VcpuHandle v : components.vcpus()) {
            out.append("vCPU ").append(v.vcpu().id()).append(": ").append(whilePaused(v, vcpu -> {
                try (var sregs = vcpu.specialRegisters()) {
                    return vcpu.registers() + " cr0=0x" + Long.toHexString(sregs.getLong(KvmAbi.SREGS_CR0))
                            + " cr3=0x" + Long.toHexString(sregs.getLong(KvmAbi.SREGS_CR3))
                            + " cr4=0x" + Long.toHexString(sregs.getLong(KvmAbi.SREGS_CR4));
                }
            }).orElse(NOT_PAUSED)).append('\n');
        }
        return out.toString();
    }

    /**
     * {@code read} applied to {@code v}'s vCPU while the vCPU is out of {@code KVM_RUN}: paused first, resumed after
     * (whatever {@code read} does); empty if it did not pause within {@link #PAUSE_WAIT}.
     */
    private <T> Optional<T> whilePaused(VcpuHandle v, Function<KvmVcpu, T> read) {
        TestProbe<io.actovisor.kernel.kvm.VcpuThread.State> paused = kit.createTestProbe();
        v.pause(paused.ref());
        try {
            try {
                paused.receiveMessage(PAUSE_WAIT);
            } catch (AssertionError notPaused) {
                return Optional.empty();
            }
            return Optional.of(read.apply(v.vcpu()));
        } finally {
            v.resume();
        }
    }

    /** A balloon counter of the guest's {@code /proc/vmstat} ({@code balloon_inflate}, {@code balloon_deflate}). */
    long vmstat(String field) {
        Matcher m = Pattern.compile(field + " (\\d+)").matcher(run("grep balloon /proc/vmstat", COMMAND));
        assertTrue(m.find(), "no " + field + " in /proc/vmstat");
        return Long.parseLong(m.group(1));
    }

    /** Wait, at most {@link #COMMAND}, until the guest's {@code /proc/vmstat} counter is at least {@code atLeast}. */
    void awaitVmstat(String field, long atLeast) {
        long deadline = System.nanoTime() + COMMAND.toNanos();
        long now = vmstat(field);
        while (now < atLeast && System.nanoTime() < deadline) {
            now = vmstat(field);
        }
        assertTrue(now >= atLeast, field + " is " + now + ", expected at least " + atLeast);
    }

    /** Set the balloon's target, as {@code PATCH /balloon} does, and check that the balloon took it. */
    void balloonTarget(long bytes) {
        TestProbe<BalloonActor.TargetResult> set = kit.createTestProbe();
        components.balloon().orElseThrow().tell(new BalloonActor.SetTarget(bytes, set.ref()));
        assertInstanceOf(BalloonActor.TargetSet.class, set.receiveMessage());
    }

    /** The host balloon's status now. */
    BalloonActor.BalloonStatus balloonStatus() {
        TestProbe<BalloonActor.BalloonStatus> probe = kit.createTestProbe();
        components.balloon().orElseThrow().tell(new BalloonActor.GetStatus(probe.ref()));
        return probe.receiveMessage();
    }

    /** Type {@code line} and Enter on the console. */
    void type(String line) {
        components.devices().get("console").tell(new ConsoleActor.Input(line + "\n"));
    }

    /** Run {@code command} in the guest's shell and return what it printed (between two markers). */
    String run(String command, Duration timeout) {
        String marker = "END" + System.nanoTime();
        type(command + "; echo " + marker.substring(0, 3) + "''" + marker.substring(3));
        Matcher m = await("(?s)\\n(.*?)" + marker + "\\r?\\n", timeout);
        return m.group(1).replace("\r", "");
    }

    static String tail(String text, int chars) {
        return text.length() <= chars ? text : "..." + text.substring(text.length() - chars);
    }

    /** Stop the VM (if it still runs) and wait until it has released everything. */
    @Override
    public void close() {
        TestProbe<VmActor.ActionResult> done = kit.createTestProbe();
        vm.tell(new VmActor.Shutdown(done.ref()));
        done.expectTerminated(vm, Duration.ofSeconds(30));
    }

    static List<String> lines(String text) {
        return new ArrayList<>(List.of(text.split("\\r?\\n")));
    }

    static LinuxGuest guest(io.actovisor.devices.boot.linux.BzImage kernel, byte[] initrd, String cmdline,
            List<LinuxGuest.VirtioSlot> virtio) {
        return new LinuxGuest(kernel, Optional.of(new io.actovisor.devices.boot.linux.LinuxBoot.Initrd("initramfs",
                initrd)), cmdline, virtio);
    }
}
