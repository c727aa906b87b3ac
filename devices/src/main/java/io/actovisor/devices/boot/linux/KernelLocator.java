package io.actovisor.devices.boot.linux;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.Optional;
import java.util.stream.Stream;

/** Where {@code guest.kernel = auto} and {@code guest.initrd = auto} look and keep things. */
public final class KernelLocator {
    private KernelLocator() {
    }

    /** The newest readable {@code /boot/vmlinuz-<release>} (by release, numerically), if any. */
    public static Optional<Path> newestKernel() {
        return newestKernel(Path.of("/boot"));
    }

    static Optional<Path> newestKernel(Path boot) {
        try (Stream<Path> files = Files.list(boot)) {
            return files.filter(p -> p.getFileName().toString().startsWith("vmlinuz-"))
                    .filter(Files::isRegularFile).filter(Files::isReadable)
                    .max(Comparator.comparing(p -> p.getFileName().toString().substring("vmlinuz-".length()),
                            KernelLocator::compareReleases));
        } catch (IOException e) {
            return Optional.empty();
        }
    }

    /** Compare "6.1.0-57-amd64" and "6.10.2-1-amd64" by their numbers, then as text. */
    static int compareReleases(String a, String b) {
        String[] x = a.split("[.-]");
        String[] y = b.split("[.-]");
        for (int i = 0; i < Math.min(x.length, y.length); i++) {
            int c = x[i].matches("\\d{1,9}") && y[i].matches("\\d{1,9}")
                    ? Integer.compare(Integer.parseInt(x[i]), Integer.parseInt(y[i])) : x[i].compareTo(y[i]);
            if (c != 0) {
                return c;
            }
        }
        return Integer.compare(x.length, y.length);
    }

    /** The initramfs cache: {@code $XDG_CACHE_HOME/actovisor}, else {@code ~/.cache/actovisor}. */
    public static Path cacheDirectory() {
        String xdg = System.getenv("XDG_CACHE_HOME");
        if (xdg != null && !xdg.isBlank() && Path.of(xdg).isAbsolute()) {
            return Path.of(xdg, "actovisor");
        }
        return Path.of(System.getProperty("user.home"), ".cache", "actovisor");
    }
}
