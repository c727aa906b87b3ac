package io.actovisor.memory.testing;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Optional;
import java.util.stream.Stream;

/**
 * What a QEMU test guest (the nested VFIO guest and the emulated KVM host in it-tests) is built from, all from the
 * machine's own packages: QEMU ({@code qemu-system-x86}), a kernel with its modules ({@code linux-image-amd64}) and a
 * static busybox ({@code busybox-static}).
 */
public final class GuestImages {
    /** The Debian packages that provide everything {@link #probe()} looks for. */
    public static final String PACKAGES = "qemu-system-x86, linux-image-amd64 and busybox-static";

    /** What the machine provides; {@link #unavailabilityCause()} says what is missing. */
    public record Facilities(Optional<Path> qemu, Optional<Path> kernel, Optional<Path> modules,
            Optional<Path> busybox, List<String> missing) {
        public Optional<String> unavailabilityCause() {
            return missing.isEmpty() ? Optional.empty()
                    : Optional.of(String.join("; ", missing) + " (install the Debian packages " + PACKAGES + ")");
        }
    }

    private GuestImages() {
    }

    /** Look for QEMU, a kernel with modules for it, and a static busybox on this machine. */
    public static Facilities probe() {
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
    public static boolean isStatic(Path elf) {
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
}
