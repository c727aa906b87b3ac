package io.actovisor.it.nested;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.HashSet;
import java.util.Set;

/**
 * A writer of the "newc" cpio format the kernel unpacks as an initramfs ({@code Documentation/driver-api/
 * early-userspace/buffer-format.rst}): per entry a 110-byte ASCII header of 13 eight-digit hex fields, the name with
 * its NUL, padding to 4 bytes, the data, padding to 4 bytes; the archive ends with the entry {@code TRAILER!!!}.
 * Parent directories are written before their entries on demand, so callers add files by path only.
 */
final class Cpio {
    private static final int DIRECTORY = 0040755;
    private static final int SYMLINK = 0120777;

    private final ByteArrayOutputStream out = new ByteArrayOutputStream();
    private final Set<String> directories = new HashSet<>();
    private int inode = 1;

    /** A directory, and its parents. */
    Cpio directory(String path) {
        String clean = strip(path);
        if (clean.isEmpty() || directories.contains(clean)) {
            return this;
        }
        int slash = clean.lastIndexOf('/');
        if (slash > 0) {
            directory(clean.substring(0, slash));
        }
        directories.add(clean);
        entry(clean, DIRECTORY, new byte[0]);
        return this;
    }

    /** A regular file with {@code mode} (e.g. 0755), and its parent directories. */
    Cpio file(String path, int mode, byte[] data) {
        String clean = strip(path);
        parent(clean);
        entry(clean, 0100000 | mode, data);
        return this;
    }

    /** A symbolic link at {@code path} pointing to {@code target}. */
    Cpio symlink(String path, String target) {
        String clean = strip(path);
        parent(clean);
        entry(clean, SYMLINK, target.getBytes(StandardCharsets.UTF_8));
        return this;
    }

    /** The archive with its trailer. */
    byte[] finish() {
        entry("TRAILER!!!", 0, new byte[0]);
        return out.toByteArray();
    }

    private void parent(String clean) {
        int slash = clean.lastIndexOf('/');
        if (slash > 0) {
            directory(clean.substring(0, slash));
        }
    }

    private static String strip(String path) {
        String p = path;
        while (p.startsWith("/")) {
            p = p.substring(1);
        }
        while (p.endsWith("/")) {
            p = p.substring(0, p.length() - 1);
        }
        return p;
    }

    private void entry(String name, int mode, byte[] data) {
        byte[] nameBytes = name.getBytes(StandardCharsets.UTF_8);
        int nlink = (mode & 0170000) == 0040000 ? 2 : 1;
        StringBuilder header = new StringBuilder("070701");
        long[] fields = {inode++, mode, 0, 0, nlink, 0, data.length, 0, 0, 0, 0, nameBytes.length + 1, 0};
        for (long field : fields) {
            header.append(String.format("%08x", field));
        }
        byte[] head = header.toString().getBytes(StandardCharsets.US_ASCII);
        out.write(head, 0, head.length);
        out.write(nameBytes, 0, nameBytes.length);
        out.write(0);
        pad();
        out.write(data, 0, data.length);
        pad();
    }

    private void pad() {
        while (out.size() % 4 != 0) {
            out.write(0);
        }
    }
}
