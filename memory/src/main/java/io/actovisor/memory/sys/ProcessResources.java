package io.actovisor.memory.sys;

import java.io.IOException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * A snapshot of this process's native resources as the kernel reports them: open file descriptors with their
 * targets, and memory mappings. Tests take one before and after and compare, to prove nothing leaked.
 *
 * <p>Only kernel objects actovisor itself creates are compared by {@link #nativeFds()}: device nodes, anonymous
 * inodes (io_uring, KVM VMs and vCPUs, eventfds) and memfds. Jar files and sockets the JVM opens lazily are not.
 */
public record ProcessResources(Map<Integer, String> fds, List<String> mappings) {
    public ProcessResources {
        fds = Map.copyOf(fds);
        mappings = List.copyOf(mappings);
    }

    /** Read {@code /proc/self/fd} and {@code /proc/self/maps} now. */
    public static ProcessResources snapshot() {
        Map<Integer, String> fds = new TreeMap<>();
        try (DirectoryStream<Path> dir = Files.newDirectoryStream(Path.of("/proc/self/fd"))) {
            for (Path p : dir) {
                try {
                    fds.put(Integer.parseInt(p.getFileName().toString()), Files.readSymbolicLink(p).toString());
                } catch (IOException | NumberFormatException e) {
                    // The fd of the directory stream itself is gone by the time it is read: skip it.
                }
            }
            List<String> maps = Files.readAllLines(Path.of("/proc/self/maps"));
            return new ProcessResources(fds, maps);
        } catch (IOException e) {
            throw new IllegalStateException("cannot read /proc/self: " + e.getMessage(), e);
        }
    }

    /**
     * A kB field of {@code /proc/self/status} now, such as {@code VmPin} (pages pinned by io_uring or VFIO) or
     * {@code VmLck} (locked memory, where type1 charges its pins); -1 when this kernel does not report the field.
     */
    public static long statusKib(String field) {
        String prefix = field + ":";
        try {
            return Files.readAllLines(Path.of("/proc/self/status")).stream().filter(l -> l.startsWith(prefix))
                    .mapToLong(l -> Long.parseLong(l.substring(prefix.length()).replaceAll("[^0-9]", "")))
                    .findFirst().orElse(-1);
        } catch (IOException e) {
            throw new IllegalStateException("cannot read /proc/self/status: " + e.getMessage(), e);
        }
    }

    /** The fds that refer to objects actovisor creates: /dev nodes, anonymous inodes and memfds. */
    public Map<Integer, String> nativeFds() {
        Map<Integer, String> out = new TreeMap<>();
        fds.forEach((fd, target) -> {
            if (target.startsWith("/dev/") && !target.startsWith("/dev/pts") && !target.equals("/dev/null")
                    && !target.startsWith("/dev/urandom") && !target.startsWith("/dev/random")
                    || target.startsWith("anon_inode:") || target.startsWith("/memfd:")) {
                out.put(fd, target);
            }
        });
        return out;
    }

    /** The mappings that overlap {@code [base, base + size)}. */
    public List<String> mappingsOverlapping(long base, long size) {
        List<String> out = new ArrayList<>();
        for (String line : mappings) {
            String[] range = line.substring(0, line.indexOf(' ')).split("-");
            long start = Long.parseUnsignedLong(range[0], 16);
            long end = Long.parseUnsignedLong(range[1], 16);
            if (Long.compareUnsigned(start, base + size) < 0 && Long.compareUnsigned(base, end) < 0) {
                out.add(line);
            }
        }
        return out;
    }

    /** The mappings whose line mentions {@code text} (e.g. {@code memfd:actovisor}). */
    public List<String> mappingsMentioning(String text) {
        return mappings.stream().filter(l -> l.contains(text)).toList();
    }

    /** The native fds open now that were not open in {@code before}. */
    public Map<Integer, String> nativeFdsOpenedSince(ProcessResources before) {
        Map<Integer, String> out = new TreeMap<>(nativeFds());
        before.nativeFds().forEach((fd, target) -> out.remove(fd, target));
        return out;
    }
}
