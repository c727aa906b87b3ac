package io.actovisor.it.nested;

import io.actovisor.memory.testing.GuestImages;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.TimeUnit;

/**
 * A nested Linux guest under QEMU TCG that runs a command of this project with the host's own JDK and class path,
 * in one of two kinds: {@link Kind#VFIO_EDU} (an emulated Intel IOMMU and QEMU's {@code edu} DMA device bound to
 * vfio-pci, for the real {@code /dev/vfio}) or {@link Kind#KVM_HOST} (an AMD SVM CPU with nested paging and the
 * kvm-amd module, for a real {@code /dev/kvm}: the emulated KVM host).
 *
 * <p>Everything comes from the machine's own packages at test time ({@link GuestImages}). The initramfs is written
 * here (a busybox, the modules the kind needs with their dependencies from modules.dep, and an init script); the
 * init loads the modules, prepares the kind's device, mounts the host's root read-only over 9p with a tmpfs at
 * {@code /dev/shm}, and runs the command chrooted into it. The command's stdout goes to the guest's second serial
 * port, which QEMU writes to a file of its own; the kernel and stderr go to the console file. A guest that does not
 * boot in time, panics, fails to load a module or hangs is killed and reported with its console and the stage it
 * reached ({@link Stage}); no QEMU process or initramfs outlives {@link Running#close()}. While it runs, the guest
 * describes itself on request ({@link Running#diagnostics}, {@link GuestDiagnostics}): a hang is reported with the
 * kernel's stacks of the command's threads and of every blocked task.
 */
public final class NestedGuest {
    /** The init prints this on the console once its modules are loaded and the device is ready. */
    static final String BOOTED = "actovisor-nested: booted";
    /** The init prints this, with the command's exit status, when the command ends. */
    static final String EXITED = "actovisor-nested: exit ";
    /** The init prints this, with a {@link Stage} label, when it enters that stage. */
    static final String STAGE = "actovisor-nested: stage ";
    /** The init prints this, with what failed, before it powers the guest off. */
    static final String ERROR = "actovisor-nested: error: ";
    /** How long a failing guest may take to describe itself ({@link Running#diagnostics}). */
    static final Duration DIAGNOSTICS_TIMEOUT = Duration.ofSeconds(90);
    /** Modules every guest needs (the host root over 9p, the diagnostics port). */
    static final List<String> BASE_MODULES = List.of("virtio_pci", "9pnet_virtio", "9p", "virtio_console");
    /** Modules the VFIO guest adds. */
    static final List<String> MODULES = List.of("virtio_pci", "9pnet_virtio", "9p", "virtio_console",
            "vfio_iommu_type1", "vfio-pci");
    /** Modules the KVM host adds, loaded after their dependencies (irqbypass, ccp, kvm) from modules.dep. */
    static final List<String> KVM_MODULES = List.of("virtio_pci", "9pnet_virtio", "9p", "virtio_console", "kvm",
            "kvm_amd");
    /** type1's mapping limit in the guest: small, so the ENOSPC refusal is reached in a few dozen mappings. */
    static final int DMA_ENTRY_LIMIT = 64;

    /** What the guest is for. */
    public enum Kind {
        /** Intel IOMMU and the edu device bound to vfio-pci: a real {@code /dev/vfio} (any host CPU). */
        // no_timer_check: under a loaded host, TCG is too slow for the kernel's check of the timer through the
        // interrupt-remapped IO-APIC, which then panics at boot ("timer doesn't work through Interrupt-remapped
        // IO-APIC")
        VFIO_EDU("max", "2G", 2, List.of("-device", "intel-iommu", "-device", "edu"),
                "intel_iommu=on no_timer_check", MODULES),
        /** AMD SVM with nested paging and kvm-amd loaded: a real {@code /dev/kvm} (any host CPU). */
        // no_timer_check for the same reason: the kernel's IO-APIC timer check can time out under TCG on a loaded
        // host ("IO-APIC + timer doesn't work!"). One vCPU: QEMU's multi-threaded TCG then has no second vCPU thread
        // to race with (lost IPIs, an emulated host that stops answering while both of its vCPUs spin), and the host
        // has no IPIs to lose. nolapic_timer nohz=off highres=off: the tick comes from the HPET in periodic mode,
        // which QEMU fires on its own every 4 ms, instead of the local APIC timer that the CPU re-arms in each
        // interrupt: an interrupt whose request QEMU loses (the CPU then halts with the vector pending and, with
        // the APIC timer, nothing left to wake it) is taken at the next tick (docs/linux-guest.md).
        KVM_HOST("qemu64,+svm,+npt", "3G", 1, List.of(), "no_timer_check nolapic_timer nohz=off highres=off",
                KVM_MODULES);

        final String cpu;
        final String memory;
        final int cpus;
        final List<String> devices;
        final String kernelArguments;
        final List<String> modules;

        Kind(String cpu, String memory, int cpus, List<String> devices, String kernelArguments,
                List<String> modules) {
            this.cpu = cpu;
            this.memory = memory;
            this.cpus = cpus;
            this.devices = devices;
            this.kernelArguments = kernelArguments;
            this.modules = modules;
        }
    }

    /** How far a guest got; a failure names the stage it happened in. */
    public enum Stage {
        BOOT("boot"), MODULE_LOAD("module load"), DEVICE_SETUP("device setup"), HOST_ROOT("host root mount"),
        COMMAND("command"), JVM_START("JVM start"), TEST("test");

        final String label;

        Stage(String label) {
            this.label = label;
        }

        @Override
        public String toString() {
            return label;
        }
    }

    /** What a run left: the command's stdout lines, the console, and how it ended. */
    record Outcome(List<String> output, String console, Optional<Integer> exitStatus, Duration bootTime,
            Duration runTime) {
    }

    private NestedGuest() {
    }

    /** Look for QEMU, a kernel with modules for it, and a static busybox on this machine. */
    static GuestImages.Facilities probe() {
        return GuestImages.probe();
    }

    /** The module files to load, dependencies first, from {@code modules.dep}; built-in ones are left out. */
    static List<Path> moduleOrder(Path moduleDir, List<String> wanted) {
        Map<String, String> byName = new HashMap<>();
        Map<String, List<String>> deps = new HashMap<>();
        try {
            for (String line : Files.readAllLines(moduleDir.resolve("modules.dep"))) {
                int colon = line.indexOf(':');
                if (colon < 0) {
                    continue;
                }
                String file = line.substring(0, colon);
                String rest = line.substring(colon + 1).trim();
                byName.put(moduleName(file), file);
                deps.put(file, rest.isEmpty() ? List.of() : List.of(rest.split("\\s+")));
            }
            Set<String> builtin = new LinkedHashSet<>();
            Path builtinList = moduleDir.resolve("modules.builtin");
            if (Files.exists(builtinList)) {
                Files.readAllLines(builtinList).forEach(l -> builtin.add(moduleName(l)));
            }
            LinkedHashSet<String> order = new LinkedHashSet<>();
            for (String name : wanted) {
                String file = byName.get(normalize(name));
                if (file == null) {
                    if (builtin.contains(normalize(name))) {
                        continue;
                    }
                    throw new IllegalStateException("kernel module " + name + " is neither in " + moduleDir
                            + "/modules.dep nor built in");
                }
                visit(file, deps, order);
            }
            return order.stream().map(moduleDir::resolve).toList();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read the module list of " + moduleDir, e);
        }
    }

    private static void visit(String file, Map<String, List<String>> deps, LinkedHashSet<String> order) {
        if (order.contains(file)) {
            return;
        }
        for (String dep : deps.getOrDefault(file, List.of())) {
            visit(dep, deps, order);
        }
        order.add(file);
    }

    private static String moduleName(String file) {
        String base = file.substring(file.lastIndexOf('/') + 1);
        int ko = base.indexOf(".ko");
        return normalize(ko < 0 ? base : base.substring(0, ko));
    }

    private static String normalize(String name) {
        return name.replace('-', '_');
    }

    /** Write the VFIO guest's initramfs for {@code facilities} to {@code target}. */
    static void buildInitramfs(GuestImages.Facilities facilities, Path target) throws IOException {
        buildInitramfs(Kind.VFIO_EDU, facilities, target);
    }

    /** Write the initramfs of a {@code kind} guest to {@code target}; the command comes from the kernel line. */
    static void buildInitramfs(Kind kind, GuestImages.Facilities facilities, Path target) throws IOException {
        Cpio cpio = new Cpio();
        cpio.file("bin/busybox", 0755, Files.readAllBytes(facilities.busybox().orElseThrow()));
        for (String dir : List.of("dev", "proc", "sys", "host", "lib/modules")) {
            cpio.directory(dir);
        }
        StringBuilder insmod = new StringBuilder();
        for (Path module : moduleOrder(facilities.modules().orElseThrow(), kind.modules)) {
            String name = module.getFileName().toString();
            cpio.file("lib/modules/" + name, 0644, Files.readAllBytes(module));
            String parameters = name.startsWith("vfio_iommu_type1.") ? " dma_entry_limit=" + DMA_ENTRY_LIMIT : "";
            insmod.append("insmod /lib/modules/").append(name).append(parameters)
                    .append(" || fail \"insmod ").append(name).append("\"\n");
        }
        cpio.file("init", 0755, initScript(kind, insmod.toString()).getBytes(StandardCharsets.UTF_8));
        Files.createDirectories(target.getParent());
        Files.write(target, cpio.finish());
    }

    private static String deviceSetup(Kind kind) {
        return switch (kind) {
            case VFIO_EDU -> """
                    bound=0
                    for d in /sys/bus/pci/devices/*; do
                      if [ "$(cat $d/vendor)" = 0x1234 ] && [ "$(cat $d/device)" = 0x11e8 ]; then
                        echo vfio-pci > $d/driver_override
                        echo ${d##*/} > /sys/bus/pci/drivers_probe
                        [ -e $d/iommu_group ] || fail "${d##*/} has no IOMMU group (is intel_iommu=on?)"
                        bound=1
                      fi
                    done
                    [ $bound = 1 ] || fail "no edu device (1234:11e8) on the PCI bus"
                    """;
            case KVM_HOST -> """
                    [ -c /dev/kvm ] || fail "kvm-amd loaded but there is no /dev/kvm (does the CPU have svm?)"
                    """;
        };
    }

    private static String initScript(Kind kind, String insmod) {
        return """
                #!/bin/busybox sh
                /bin/busybox --install -s /bin
                export PATH=/bin
                fail() { echo "%1$s$*"; poweroff -f; }
                mount -t proc proc /proc
                mount -t sysfs sys /sys
                mount -t devtmpfs dev /dev
                ip link set lo up || fail "cannot bring up the loopback interface"
                # Diagnosable hangs: every sysrq function (w: blocked tasks), and the console prints KERN_INFO, so
                # the hung-task detector's stacks and sysrq dumps reach the console file.
                echo 1 > /proc/sys/kernel/sysrq
                echo 7 > /proc/sys/kernel/printk
                cmdline=$(cat /proc/cmdline)
                script=${cmdline##*actovisor.script=}
                script=${script%%%% *}
                echo "%2$smodule load"
                """.formatted(ERROR, STAGE) + insmod + """
                echo "%1$sdevice setup"
                """.formatted(STAGE) + deviceSetup(kind) + """
                echo "%1$shost root mount"
                mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=262144 host /host || fail "cannot mount the host over 9p"
                mount -t proc proc /host/proc || fail "cannot mount /proc in the host root"
                mount -t sysfs sys /host/sys || fail "cannot mount /sys in the host root"
                mount -t tracefs tracefs /host/sys/kernel/tracing 2>/dev/null || true
                mount -t devtmpfs dev /host/dev || fail "cannot mount /dev in the host root"
                mkdir -p /host/dev/shm && mount -t tmpfs shm /host/dev/shm || fail "cannot mount a tmpfs"
                echo "%2$s $(uname -r)"
                echo "%1$scommand"
                chroot /host /bin/sh "$script" < /dev/console > /dev/ttyS1 2> /dev/console &
                command=$!
                """.formatted(STAGE, BOOTED) + GuestDiagnostics.responder() + """
                wait $command
                echo "%1$s$?"
                poweroff -f
                """.formatted(EXITED);
    }

    /**
     * Boot the VFIO guest and run {@code command} (a shell command line, run with {@code /bin/sh} in the host's root,
     * with {@code /dev/shm} as its only writable directory) in it.
     */
    static Outcome run(GuestImages.Facilities facilities, Path workDir, String command, Duration bootTimeout,
            Duration runTimeout) throws IOException, InterruptedException {
        try (Running guest = start(Kind.VFIO_EDU, facilities, workDir, command)) {
            Duration bootTime = guest.awaitBoot(bootTimeout);
            if (!guest.process.waitFor(runTimeout.toMillis(), TimeUnit.MILLISECONDS)) {
                throw guest.diagnosedFailure("the guest did not finish within " + runTimeout.toSeconds() + " s");
            }
            Duration total = guest.elapsed();
            String consoleText = guest.console();
            return new Outcome(guest.outputLines(), consoleText, guest.exitStatus(), bootTime, total.minus(bootTime));
        }
    }

    /**
     * Start a {@code kind} guest that runs {@code command}; the caller waits for it through the handle and closes
     * it, which kills QEMU and deletes the initramfs.
     */
    public static Running start(Kind kind, GuestImages.Facilities facilities, Path workDir, String command)
            throws IOException {
        return start(kind, facilities, workDir, command, List.of());
    }

    /** {@link #start(Kind, GuestImages.Facilities, Path, String)} with QEMU options that override the kind's. */
    static Running start(Kind kind, GuestImages.Facilities facilities, Path workDir, String command,
            List<String> qemuOverrides) throws IOException {
        Files.createDirectories(workDir);
        Path initramfs = workDir.resolve("initramfs.cpio");
        Path script = workDir.resolve("command.sh").toAbsolutePath();
        if (script.toString().contains(" ")) {
            throw new IllegalStateException("the work directory " + workDir + " must not contain spaces");
        }
        buildInitramfs(kind, facilities, initramfs);
        Files.writeString(script, "#!/bin/sh\ncd /dev/shm\n" + command + "\n");
        Path console = workDir.resolve("console.log");
        Path output = workDir.resolve("output.log");
        Files.deleteIfExists(console);
        Files.deleteIfExists(output);
        Optional<Path> diagnostics = GuestDiagnostics.socket(workDir);
        if (diagnostics.isPresent()) {
            Files.deleteIfExists(diagnostics.get());
        }
        List<String> qemu = new ArrayList<>(List.of(facilities.qemu().orElseThrow().toString(),
                "-machine", "q35", "-accel", "tcg", "-cpu", kind.cpu, "-m", kind.memory,
                "-smp", Integer.toString(kind.cpus),
                "-display", "none", "-no-reboot", "-nic", "none", "-monitor", "none",
                "-kernel", facilities.kernel().orElseThrow().toString(), "-initrd", initramfs.toString(),
                "-append", ("console=ttyS0 " + kind.kernelArguments + " quiet panic=-1 actovisor.script="
                        + script).replace("  ", " ")));
        qemu.addAll(kind.devices);
        diagnostics.ifPresent(socket -> qemu.addAll(GuestDiagnostics.qemuOptions(socket)));
        qemu.addAll(qemuOverrides);
        qemu.addAll(List.of(
                "-virtfs", "local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap",
                "-serial", "file:" + console, "-serial", "file:" + output));
        Process process;
        try {
            process = new ProcessBuilder(qemu).redirectErrorStream(true)
                    .redirectOutput(workDir.resolve("qemu.log").toFile()).start();
        } catch (IOException e) {
            Files.deleteIfExists(initramfs);
            throw e;
        }
        return new Running(process, workDir, initramfs, console, output, diagnostics);
    }

    /**
     * The JVM option that gives a guest JVM this test JVM's logback configuration (set by it-tests' pom), so that it
     * does not pick one of several {@code logback-test.xml} on the class path and print a warning to stdout.
     */
    public static List<String> logbackOption() {
        String file = System.getProperty("logback.configurationFile");
        return file == null || file.contains(" ") ? List.of() : List.of("-Dlogback.configurationFile=" + file);
    }

    static String read(Path file) throws IOException {
        return Files.exists(file) ? new String(Files.readAllBytes(file), StandardCharsets.UTF_8) : "";
    }

    /** A started guest: QEMU, its console and output files; {@link #close()} kills it and removes the initramfs. */
    public static final class Running implements AutoCloseable {
        private final Process process;
        private final Path workDir;
        private final Path initramfs;
        private final Path consoleFile;
        private final Path outputFile;
        private final Optional<Path> diagnosticsSocket;
        private final long start = System.nanoTime();
        private final Thread killer;

        private Running(Process process, Path workDir, Path initramfs, Path console, Path output,
                Optional<Path> diagnosticsSocket) {
            this.process = process;
            this.diagnosticsSocket = diagnosticsSocket;
            this.workDir = workDir;
            this.initramfs = initramfs;
            this.consoleFile = console;
            this.outputFile = output;
            // A test JVM that is stopped while the guest runs still takes QEMU down with it.
            this.killer = new Thread(process::destroyForcibly, "nested-guest-killer");
            Runtime.getRuntime().addShutdownHook(killer);
        }

        /** Wait until the init reports the guest booted; a failure names the stage it stopped in. */
        public Duration awaitBoot(Duration timeout) throws IOException, InterruptedException {
            long deadline = start + timeout.toNanos();
            while (true) {
                String text = console();
                if (text.contains(BOOTED)) {
                    return elapsed();
                }
                if (text.contains(ERROR) || !process.isAlive()) {
                    process.waitFor(5, TimeUnit.SECONDS);
                    throw failure("the guest failed during " + stage(console()));
                }
                if (System.nanoTime() - deadline > 0) {
                    throw failure("the guest did not boot within " + timeout.toSeconds() + " s (stuck in "
                            + stage(text) + ")");
                }
                Thread.sleep(200);
            }
        }

        /** The stage the init reached, from its markers on the console. */
        static Stage stage(String console) {
            Stage reached = Stage.BOOT;
            for (String line : console.lines().toList()) {
                int at = line.indexOf(STAGE);
                if (at >= 0) {
                    String label = line.substring(at + STAGE.length()).trim();
                    for (Stage s : Stage.values()) {
                        if (s.label.equals(label)) {
                            reached = s;
                        }
                    }
                }
            }
            return reached;
        }

        /** The directory of its initramfs, console and output files. */
        public Path workDir() {
            return workDir;
        }

        public boolean isAlive() {
            return process.isAlive();
        }

        public boolean waitFor(Duration timeout) throws InterruptedException {
            return process.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS);
        }

        public Duration elapsed() {
            return Duration.ofNanos(System.nanoTime() - start);
        }

        public String console() throws IOException {
            return read(consoleFile);
        }

        /** The command's complete stdout lines so far, without blank ones. */
        public List<String> outputLines() throws IOException {
            String text = read(outputFile);
            int end = text.lastIndexOf('\n');
            String complete = process.isAlive() ? (end < 0 ? "" : text.substring(0, end)) : text;
            return complete.lines().map(l -> l.replace("\r", "")).filter(l -> !l.isBlank()).toList();
        }

        /** The command's exit status, once the init reported it. */
        public Optional<Integer> exitStatus() throws IOException {
            return console().lines().filter(l -> l.startsWith(EXITED)).findFirst()
                    .map(l -> Integer.parseInt(l.substring(EXITED.length()).trim()));
        }

        /**
         * The guest kernel's view now ({@link GuestDiagnostics}): memory, the command's threads with their kernel
         * stacks, the blocked tasks; at most {@code timeout} long.
         */
        public String diagnostics(Duration timeout) {
            return process.isAlive() ? GuestDiagnostics.request(diagnosticsSocket, timeout)
                    : "(no diagnostics: the guest is not running)";
        }

        /** A failure that carries the kernel's view of a guest still running, then {@link #failure(String)}. */
        public GuestFailure diagnosedFailure(String what) throws IOException {
            String diagnostics = diagnostics(DIAGNOSTICS_TIMEOUT);
            return failure(what + "\n" + diagnostics);
        }

        /** A failure that carries the end of the console and of QEMU's own output. */
        public GuestFailure failure(String what) throws IOException {
            return new GuestFailure(what, consoleFile, workDir);
        }

        @Override
        public void close() throws IOException {
            try {
                process.destroyForcibly();
                try {
                    process.waitFor(10, TimeUnit.SECONDS);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
                try {
                    Runtime.getRuntime().removeShutdownHook(killer);
                } catch (IllegalStateException shuttingDown) {
                    // The hook runs anyway.
                }
            } finally {
                Files.deleteIfExists(initramfs);
                if (diagnosticsSocket.isPresent()) {
                    Files.deleteIfExists(diagnosticsSocket.get());
                }
            }
        }
    }

    /** A guest that failed or hung, with the end of its console and of QEMU's own output. */
    public static final class GuestFailure extends IllegalStateException {
        GuestFailure(String what, Path console, Path workDir) throws IOException {
            super(what + "\n--- console (" + console + ") ---\n" + tail(read(console)) + "\n--- qemu ---\n"
                    + tail(read(workDir.resolve("qemu.log"))));
        }

        private static String tail(String text) {
            List<String> lines = text.lines().toList();
            return String.join("\n", lines.subList(Math.max(0, lines.size() - 60), lines.size()));
        }
    }
}
