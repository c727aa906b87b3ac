package io.actovisor.it.nested;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/**
 * A nested Linux guest with an emulated Intel IOMMU and QEMU's {@code edu} DMA device, for running a Java entry
 * point of this project against a real {@code /dev/vfio}.
 *
 * <p>Everything comes from the machine's own packages at test time: the kernel and its modules
 * ({@code linux-image-amd64}), a static busybox ({@code busybox-static}) and QEMU ({@code qemu-system-x86}). The
 * initramfs is written here (a busybox, the modules vfio-pci, vfio_iommu_type1 and 9p need, and an init script); the
 * init loads the modules, binds the edu function to vfio-pci, mounts the host's root read-only over 9p, and runs
 * the given command chrooted into it with the host's own JDK and the test's class path. The command's stdout goes to
 * the guest's second serial port, which QEMU writes to a file of its own; the kernel and stderr go to the console
 * file. A guest that does not boot within {@code bootTimeout} or finish within {@code runTimeout} is killed and
 * reported with its console.
 */
final class NestedGuest {
    /** The init prints this on the console once its modules are loaded and the device is bound. */
    static final String BOOTED = "actovisor-nested: booted";
    /** The init prints this, with the command's exit status, when the command ends. */
    static final String EXITED = "actovisor-nested: exit ";
    /** Modules the guest needs, with their dependencies resolved from modules.dep. */
    static final List<String> MODULES = List.of("virtio_pci", "9pnet_virtio", "9p", "vfio_iommu_type1", "vfio-pci");
    /** type1's mapping limit in the guest: small, so the ENOSPC refusal is reached in a few dozen mappings. */
    static final int DMA_ENTRY_LIMIT = 64;

    /** What the machine provides; {@link #unavailabilityCause()} says what is missing. */
    record Facilities(Optional<Path> qemu, Optional<Path> kernel, Optional<Path> modules, Optional<Path> busybox,
            List<String> missing) {
        Optional<String> unavailabilityCause() {
            return missing.isEmpty() ? Optional.empty() : Optional.of(String.join("; ", missing)
                    + " (install the Debian packages qemu-system-x86, linux-image-amd64 and busybox-static)");
        }
    }

    /** What a run left: the command's stdout lines, the console, and how it ended. */
    record Outcome(List<String> output, String console, Optional<Integer> exitStatus, Duration bootTime,
            Duration runTime) {
    }

    private NestedGuest() {
    }

    /** Look for QEMU, a kernel with modules for it, and a static busybox on this machine. */
    static Facilities probe() {
        List<String> missing = new ArrayList<>();
        Optional<Path> qemu = Stream.of("/usr/bin/qemu-system-x86_64", "/usr/local/bin/qemu-system-x86_64")
                .map(Path::of).filter(Files::isExecutable).findFirst();
        if (qemu.isEmpty()) {
            missing.add("no qemu-system-x86_64");
        }
        Optional<Path> kernel = Optional.empty();
        Optional<Path> modules = Optional.empty();
        try (Stream<Path> boot = Files.exists(Path.of("/boot")) ? Files.list(Path.of("/boot")) : Stream.empty()) {
            List<Path> kernels = boot.filter(p -> p.getFileName().toString().startsWith("vmlinuz-"))
                    .filter(p -> Files.exists(moduleDir(p).resolve("modules.dep")))
                    .sorted(Comparator.comparing(Path::toString).reversed()).toList();
            if (kernels.isEmpty()) {
                missing.add("no /boot/vmlinuz-<version> with /lib/modules/<version>/modules.dep");
            } else if (!Files.isReadable(kernels.get(0))) {
                missing.add(kernels.get(0) + " is not readable by this user");
            } else {
                kernel = Optional.of(kernels.get(0));
                modules = Optional.of(moduleDir(kernels.get(0)));
            }
        } catch (IOException e) {
            missing.add("cannot list /boot: " + e.getMessage());
        }
        Optional<Path> busybox = Stream.of("/bin/busybox", "/usr/bin/busybox").map(Path::of)
                .filter(Files::isRegularFile).findFirst();
        if (busybox.isEmpty()) {
            missing.add("no busybox");
        } else if (!isStatic(busybox.get())) {
            missing.add(busybox.get() + " is dynamically linked; the initramfs needs busybox-static");
            busybox = Optional.empty();
        }
        return new Facilities(qemu, kernel, modules, busybox, List.copyOf(missing));
    }

    private static Path moduleDir(Path vmlinuz) {
        return Path.of("/lib/modules", vmlinuz.getFileName().toString().substring("vmlinuz-".length()));
    }

    /** An ELF64 executable without a PT_INTERP program header needs no dynamic loader. */
    static boolean isStatic(Path elf) {
        try {
            ByteBuffer b = ByteBuffer.wrap(Files.readAllBytes(elf)).order(ByteOrder.LITTLE_ENDIAN);
            if (b.getInt(0) != 0x464c457f || b.get(4) != 2) {
                return false;
            }
            long phoff = b.getLong(0x20);
            int phentsize = Short.toUnsignedInt(b.getShort(0x36));
            int phnum = Short.toUnsignedInt(b.getShort(0x38));
            for (int i = 0; i < phnum; i++) {
                if (b.getInt((int) (phoff + (long) i * phentsize)) == 3) {
                    return false;
                }
            }
            return true;
        } catch (IOException | IndexOutOfBoundsException e) {
            return false;
        }
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

    /** Write the initramfs for {@code facilities} to {@code target}; the command comes from the kernel line. */
    static void buildInitramfs(Facilities facilities, Path target) throws IOException {
        Cpio cpio = new Cpio();
        cpio.file("bin/busybox", 0755, Files.readAllBytes(facilities.busybox().orElseThrow()));
        for (String dir : List.of("dev", "proc", "sys", "host", "lib/modules")) {
            cpio.directory(dir);
        }
        StringBuilder insmod = new StringBuilder();
        for (Path module : moduleOrder(facilities.modules().orElseThrow(), MODULES)) {
            String name = module.getFileName().toString();
            cpio.file("lib/modules/" + name, 0644, Files.readAllBytes(module));
            String parameters = name.startsWith("vfio_iommu_type1.") ? " dma_entry_limit=" + DMA_ENTRY_LIMIT : "";
            insmod.append("insmod /lib/modules/").append(name).append(parameters)
                    .append(" || fail \"insmod ").append(name).append("\"\n");
        }
        cpio.file("init", 0755, initScript(insmod.toString()).getBytes(StandardCharsets.UTF_8));
        Files.createDirectories(target.getParent());
        Files.write(target, cpio.finish());
    }

    private static String initScript(String insmod) {
        return """
                #!/bin/busybox sh
                /bin/busybox --install -s /bin
                export PATH=/bin
                fail() { echo "actovisor-nested: error: $*"; poweroff -f; }
                mount -t proc proc /proc
                mount -t sysfs sys /sys
                mount -t devtmpfs dev /dev
                cmdline=$(cat /proc/cmdline)
                script=${cmdline##*actovisor.script=}
                script=${script%% *}
                """ + insmod + """
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
                mount -t 9p -o trans=virtio,version=9p2000.L,ro host /host || fail "cannot mount the host over 9p"
                mount -t proc proc /host/proc || fail "cannot mount /proc in the host root"
                mount -t sysfs sys /host/sys || fail "cannot mount /sys in the host root"
                mount -t devtmpfs dev /host/dev || fail "cannot mount /dev in the host root"
                mkdir -p /host/dev/shm && mount -t tmpfs shm /host/dev/shm || fail "cannot mount a tmpfs"
                echo "%s $(uname -r)"
                chroot /host /bin/sh "$script" > /dev/ttyS1 2> /dev/console
                echo "%s$?"
                poweroff -f
                """.formatted(BOOTED, EXITED);
    }

    /**
     * Boot the guest and run {@code command} (a shell command line, run with {@code /bin/sh} in the host's root,
     * with {@code /dev/shm} as its only writable directory) in it.
     */
    static Outcome run(Facilities facilities, Path workDir, String command, Duration bootTimeout,
            Duration runTimeout) throws IOException, InterruptedException {
        Files.createDirectories(workDir);
        Path initramfs = workDir.resolve("initramfs.cpio");
        buildInitramfs(facilities, initramfs);
        Path script = workDir.resolve("command.sh").toAbsolutePath();
        Files.writeString(script, "#!/bin/sh\ncd /dev/shm\n" + command + "\n");
        if (script.toString().contains(" ")) {
            throw new IllegalStateException("the work directory " + workDir + " must not contain spaces");
        }
        Path console = workDir.resolve("console.log");
        Path output = workDir.resolve("output.log");
        Files.deleteIfExists(console);
        Files.deleteIfExists(output);
        List<String> qemu = List.of(facilities.qemu().orElseThrow().toString(),
                "-machine", "q35", "-accel", "tcg", "-cpu", "max", "-m", "2G", "-smp", "2",
                "-display", "none", "-no-reboot", "-nic", "none", "-monitor", "none",
                "-kernel", facilities.kernel().orElseThrow().toString(), "-initrd", initramfs.toString(),
                "-append", "console=ttyS0 intel_iommu=on quiet panic=-1 actovisor.script=" + script,
                "-device", "intel-iommu", "-device", "edu",
                "-virtfs", "local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap",
                "-serial", "file:" + console, "-serial", "file:" + output);
        Process process = new ProcessBuilder(qemu).redirectErrorStream(true)
                .redirectOutput(workDir.resolve("qemu.log").toFile()).start();
        long start = System.nanoTime();
        try {
            Duration bootTime = waitFor(process, console, BOOTED, bootTimeout, start, "boot");
            if (!process.waitFor(runTimeout.toMillis(), TimeUnit.MILLISECONDS)) {
                throw new GuestFailure("the guest did not finish within " + runTimeout.toSeconds() + " s", console,
                        workDir);
            }
            Duration total = Duration.ofNanos(System.nanoTime() - start);
            String consoleText = read(console);
            Optional<Integer> status = consoleText.lines().filter(l -> l.startsWith(EXITED)).findFirst()
                    .map(l -> Integer.parseInt(l.substring(EXITED.length()).trim()));
            List<String> lines = read(output).lines().map(l -> l.replace("\r", "")).filter(l -> !l.isBlank())
                    .toList();
            return new Outcome(lines, consoleText, status, bootTime, total.minus(bootTime));
        } finally {
            process.destroyForcibly();
            process.waitFor(10, TimeUnit.SECONDS);
        }
    }

    private static Duration waitFor(Process process, Path console, String marker, Duration timeout, long start,
            String what) throws InterruptedException, IOException {
        long deadline = start + timeout.toNanos();
        while (true) {
            String text = read(console);
            if (text.contains(marker)) {
                return Duration.ofNanos(System.nanoTime() - start);
            }
            if (text.contains("actovisor-nested: error") || !process.isAlive()) {
                process.waitFor(5, TimeUnit.SECONDS);
                throw new GuestFailure("the guest failed during " + what, console, console.getParent());
            }
            if (System.nanoTime() - deadline > 0) {
                throw new GuestFailure("the guest did not " + what + " within " + timeout.toSeconds() + " s",
                        console, console.getParent());
            }
            Thread.sleep(200);
        }
    }

    static String read(Path file) throws IOException {
        return Files.exists(file) ? new String(Files.readAllBytes(file), StandardCharsets.UTF_8) : "";
    }

    /** A guest that failed or hung, with the end of its console and of QEMU's own output. */
    static final class GuestFailure extends IllegalStateException {
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
