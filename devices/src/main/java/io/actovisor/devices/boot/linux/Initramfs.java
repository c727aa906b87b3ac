package io.actovisor.devices.boot.linux;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.tukaani.xz.XZInputStream;

/**
 * The initramfs actovisor builds for {@code guest.initrd = auto}: a static busybox, the kernel modules a VM's
 * devices need (with their dependencies, in the order {@code modules.dep} gives; xz-compressed modules are unpacked,
 * since busybox's insmod may not read them) and an {@code /init} that mounts {@code /proc}, {@code /sys} and
 * {@code /dev}, loads the modules, prints {@value #READY} and runs a shell on the console. When the shell exits the
 * guest reboots, which stops the VM; so does busybox's {@code reboot}, {@code poweroff} or {@code halt}, which
 * signal init (SIGTERM, SIGUSR2, SIGUSR1): the shell runs in the background and init waits for it, so that its
 * trap runs at once (a shell runs a trap only after its foreground command ends). Built archives are cached by
 * their inputs' digest.
 */
public final class Initramfs {
    /** What {@code /init} prints once its modules are loaded, just before the shell starts. */
    public static final String READY = "actovisor-init: ready";
    /**
     * The modules a Linux guest on actovisor needs: virtio-mmio (found through ACPI), the balloon driver and the
     * block driver (for {@code devices.blk}: {@code /dev/vda}).
     */
    public static final List<String> DEFAULT_MODULES = List.of("virtio_mmio", "virtio_balloon", "virtio_blk");
    private static final Logger LOG = LoggerFactory.getLogger(Initramfs.class);

    private Initramfs() {
    }

    /** Where to find what goes in: a static busybox and a kernel's module tree ({@code /lib/modules/<release>}). */
    public record Inputs(Path busybox, Path moduleTree, List<String> modules) {
        public Inputs {
            modules = List.copyOf(modules);
        }
    }

    /** The module tree of the kernel {@code /boot/vmlinuz-<release>}: {@code /lib/modules/<release>}. */
    public static Path moduleTreeOf(Path vmlinuz) {
        String file = vmlinuz.getFileName().toString();
        if (!file.startsWith("vmlinuz-")) {
            throw new LinuxBootException("cannot tell the kernel release of " + vmlinuz + " (expected a file named "
                    + "vmlinuz-<release>) to find its modules");
        }
        return Path.of("/lib/modules", file.substring("vmlinuz-".length()));
    }

    /** A static busybox on this machine, if there is one. */
    public static Optional<Path> findBusybox() {
        for (String candidate : List.of("/bin/busybox", "/usr/bin/busybox")) {
            Path p = Path.of(candidate);
            if (Files.isRegularFile(p) && isStatic(p)) {
                return Optional.of(p);
            }
        }
        return Optional.empty();
    }

    /** Whether {@code elf} has no program interpreter (PT_INTERP), i.e. is statically linked. */
    static boolean isStatic(Path elf) {
        try {
            byte[] head = new byte[64];
            try (InputStream in = Files.newInputStream(elf)) {
                if (in.readNBytes(head, 0, 64) < 64 || head[0] != 0x7f || head[1] != 'E') {
                    return false;
                }
            }
            byte[] all = Files.readAllBytes(elf);
            java.nio.ByteBuffer b = java.nio.ByteBuffer.wrap(all).order(java.nio.ByteOrder.LITTLE_ENDIAN);
            long phoff = b.getLong(32);
            int phentsize = b.getShort(54) & 0xffff;
            int phnum = b.getShort(56) & 0xffff;
            for (int i = 0; i < phnum; i++) {
                if (b.getInt((int) (phoff + (long) i * phentsize)) == 3) {
                    return false;
                }
            }
            return true;
        } catch (IOException | RuntimeException e) {
            return false;
        }
    }

    /** The archive in {@code cacheDir} for {@code inputs}, built on first use. */
    public static Path cached(Inputs inputs, Path cacheDir) {
        List<Path> modules = moduleOrder(inputs.moduleTree(), inputs.modules());
        String key;
        try {
            MessageDigest digest = MessageDigest.getInstance("SHA-256");
            digest.update(init(modules).getBytes(StandardCharsets.UTF_8));
            digest.update(Files.readAllBytes(inputs.busybox()));
            for (Path m : modules) {
                digest.update(m.toString().getBytes(StandardCharsets.UTF_8));
                digest.update(Long.toString(Files.size(m)).getBytes(StandardCharsets.US_ASCII));
                digest.update(Files.getLastModifiedTime(m).toString().getBytes(StandardCharsets.US_ASCII));
            }
            key = HexFormat.of().formatHex(digest.digest()).substring(0, 16);
        } catch (IOException e) {
            throw new LinuxBootException("cannot read the initramfs inputs (" + inputs.busybox() + ", "
                    + inputs.moduleTree() + "): " + e, e);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-256 is missing from this JVM", e);
        }
        Path file = cacheDir.resolve("initramfs-" + inputs.moduleTree().getFileName() + "-" + key + ".cpio");
        if (Files.isRegularFile(file)) {
            return file;
        }
        try {
            Files.createDirectories(cacheDir);
            Path partial = Files.createTempFile(cacheDir, "initramfs-", ".partial");
            try {
                Files.write(partial, build(inputs.busybox(), modules));
                Files.move(partial, file, java.nio.file.StandardCopyOption.ATOMIC_MOVE,
                        java.nio.file.StandardCopyOption.REPLACE_EXISTING);
            } finally {
                Files.deleteIfExists(partial);
            }
        } catch (IOException e) {
            throw new LinuxBootException("cannot write the initramfs to the cache directory " + cacheDir + ": " + e,
                    e);
        }
        LOG.info("Built the initramfs {} ({} modules)", file, modules.size());
        return file;
    }

    /** The archive: busybox, the {@code modules} (files, in load order, decompressed) and the init script. */
    public static byte[] build(Path busybox, List<Path> modules) throws IOException {
        NewcArchive cpio = new NewcArchive();
        for (String dir : List.of("bin", "sbin", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp", "root",
                "lib/modules")) {
            cpio.directory(dir, 0755);
        }
        cpio.characterDevice("dev/console", 0600, 5, 1);
        cpio.file("bin/busybox", 0755, Files.readAllBytes(busybox));
        cpio.symlink("bin/sh", "busybox");
        for (Path module : modules) {
            cpio.file("lib/modules/" + loadedName(module), 0644, moduleBytes(module));
        }
        cpio.file("init", 0755, init(modules).getBytes(StandardCharsets.UTF_8));
        return cpio.toByteArray();
    }

    private static String init(List<Path> modules) {
        StringBuilder insmod = new StringBuilder();
        for (Path m : modules) {
            insmod.append("insmod /lib/modules/").append(loadedName(m))
                    .append(" || echo \"actovisor-init: insmod ").append(loadedName(m)).append(" failed\"\n");
        }
        return """
                #!/bin/busybox sh
                /bin/busybox --install -s
                mount -t proc proc /proc
                mount -t sysfs sysfs /sys
                mount -t devtmpfs devtmpfs /dev
                """ + insmod + """
                echo "%s after $(cut -d' ' -f1 /proc/uptime) s"
                trap 'echo "actovisor-init: rebooting"; reboot -f' TERM USR1 USR2
                setsid cttyhack sh &
                wait $!
                echo "actovisor-init: the shell exited; rebooting"
                reboot -f
                """.formatted(READY);
    }

    private static String loadedName(Path module) {
        String name = module.getFileName().toString();
        return name.endsWith(".xz") ? name.substring(0, name.length() - 3) : name;
    }

    private static byte[] moduleBytes(Path module) throws IOException {
        String name = module.getFileName().toString();
        if (name.endsWith(".ko")) {
            return Files.readAllBytes(module);
        }
        if (name.endsWith(".ko.xz")) {
            try (InputStream in = new XZInputStream(Files.newInputStream(module))) {
                return in.readAllBytes();
            }
        }
        throw new LinuxBootException("the kernel module " + module + " is compressed in a way actovisor cannot "
                + "unpack (only .ko and .ko.xz are supported)");
    }

    /**
     * The module files that provide {@code wanted} (names as {@code modinfo} gives them, '-' and '_' alike), their
     * dependencies first, each once; modules built into the kernel ({@code modules.builtin}) are left out.
     */
    public static List<Path> moduleOrder(Path moduleTree, List<String> wanted) {
        Map<String, List<String>> deps = new LinkedHashMap<>();
        Set<String> builtin = new LinkedHashSet<>();
        Path depFile = moduleTree.resolve("modules.dep");
        try {
            for (String line : Files.readAllLines(depFile)) {
                int colon = line.indexOf(':');
                if (colon < 0) {
                    continue;
                }
                String rest = line.substring(colon + 1).trim();
                deps.put(line.substring(0, colon), rest.isEmpty() ? List.of() : List.of(rest.split("\\s+")));
            }
            Path builtinFile = moduleTree.resolve("modules.builtin");
            if (Files.isRegularFile(builtinFile)) {
                for (String line : Files.readAllLines(builtinFile)) {
                    builtin.add(moduleName(line.trim()));
                }
            }
        } catch (IOException e) {
            throw new LinuxBootException("cannot read the module list " + depFile + ": " + e, e);
        }
        Map<String, String> byName = new LinkedHashMap<>();
        deps.keySet().forEach(file -> byName.put(moduleName(file), file));
        LinkedHashSet<String> order = new LinkedHashSet<>();
        for (String w : wanted) {
            String name = w.replace('-', '_');
            String file = byName.get(name);
            if (file == null) {
                if (builtin.contains(name)) {
                    continue;
                }
                throw new LinuxBootException("the kernel module " + w + " is neither in " + depFile
                        + " nor built into the kernel");
            }
            List<String> needs = deps.get(file);
            for (int i = needs.size() - 1; i >= 0; i--) {
                order.add(needs.get(i));
            }
            order.add(file);
        }
        List<Path> out = new ArrayList<>();
        order.forEach(f -> out.add(moduleTree.resolve(f)));
        return out;
    }

    private static String moduleName(String file) {
        String base = file.substring(file.lastIndexOf('/') + 1);
        int ko = base.indexOf(".ko");
        return (ko < 0 ? base : base.substring(0, ko)).replace('-', '_');
    }
}
