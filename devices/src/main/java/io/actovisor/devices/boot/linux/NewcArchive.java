package io.actovisor.devices.boot.linux;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.HashSet;
import java.util.Set;

/**
 * A cpio archive in the "newc" format (magic {@code 070701}) that the Linux kernel unpacks as an initramfs
 * (Documentation/driver-api/early-userspace/buffer-format.rst): each entry is a 110-byte ASCII header of thirteen
 * 8-digit hex fields, the NUL-terminated name padded to a multiple of four, then the data padded likewise; a
 * {@code TRAILER!!!} entry ends it. Parent directories are added on demand. Names are relative (no leading slash).
 */
public final class NewcArchive {
    private static final int S_IFDIR = 0040000;
    private static final int S_IFREG = 0100000;
    private static final int S_IFLNK = 0120000;
    private static final int S_IFCHR = 0020000;
    private static final String TRAILER = "TRAILER!!!";

    private final ByteArrayOutputStream out = new ByteArrayOutputStream();
    private final Set<String> entries = new HashSet<>();
    private int inode = 1;
    private boolean finished;

    /** A directory with {@code permissions} (e.g. 0755). */
    public NewcArchive directory(String path, int permissions) {
        String name = normalize(path);
        if (entries.contains(name)) {
            return this;
        }
        parents(name);
        entry(name, S_IFDIR | permissions, 2, 0, 0, new byte[0]);
        return this;
    }

    /** A regular file. */
    public NewcArchive file(String path, int permissions, byte[] data) {
        String name = normalize(path);
        parents(name);
        entry(name, S_IFREG | permissions, 1, 0, 0, data);
        return this;
    }

    /** A symbolic link at {@code path} pointing to {@code target}. */
    public NewcArchive symlink(String path, String target) {
        String name = normalize(path);
        parents(name);
        entry(name, S_IFLNK | 0777, 1, 0, 0, target.getBytes(StandardCharsets.UTF_8));
        return this;
    }

    /** A character device node (e.g. {@code dev/console}, 5:1). */
    public NewcArchive characterDevice(String path, int permissions, int major, int minor) {
        String name = normalize(path);
        parents(name);
        entry(name, S_IFCHR | permissions, 1, major, minor, new byte[0]);
        return this;
    }

    /** The archive, trailer included; no entries may be added after. */
    public byte[] toByteArray() {
        if (!finished) {
            finished = true;
            writeEntry(TRAILER, 0, 1, 0, 0, new byte[0], 0);
        }
        return out.toByteArray();
    }

    private void parents(String name) {
        int slash = name.lastIndexOf('/');
        if (slash > 0) {
            directory(name.substring(0, slash), 0755);
        }
    }

    private void entry(String name, int mode, int links, int rdevMajor, int rdevMinor, byte[] data) {
        if (finished) {
            throw new IllegalStateException("the archive is finished; cannot add " + name);
        }
        if (!entries.add(name)) {
            throw new IllegalArgumentException("the archive already holds " + name);
        }
        writeEntry(name, mode, links, rdevMajor, rdevMinor, data, inode++);
    }

    private void writeEntry(String name, int mode, int links, int rdevMajor, int rdevMinor, byte[] data, int ino) {
        byte[] nameBytes = name.getBytes(StandardCharsets.UTF_8);
        StringBuilder header = new StringBuilder("070701");
        for (long field : new long[] {ino, mode, 0, 0, links, 0, data.length, 0, 0, rdevMajor, rdevMinor,
            nameBytes.length + 1, 0}) {
            header.append(String.format("%08x", field));
        }
        out.writeBytes(header.toString().getBytes(StandardCharsets.US_ASCII));
        out.writeBytes(nameBytes);
        out.write(0);
        pad();
        out.writeBytes(data);
        pad();
    }

    private void pad() {
        while (out.size() % 4 != 0) {
            out.write(0);
        }
    }

    private static String normalize(String path) {
        String name = path;
        while (name.startsWith("/")) {
            name = name.substring(1);
        }
        while (name.endsWith("/")) {
            name = name.substring(0, name.length() - 1);
        }
        if (name.isEmpty() || name.contains("//") || name.equals(TRAILER)) {
            throw new IllegalArgumentException("'" + path + "' is not a valid archive path");
        }
        return name;
    }
}
