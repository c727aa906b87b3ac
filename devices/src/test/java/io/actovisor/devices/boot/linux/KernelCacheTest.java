package io.actovisor.devices.boot.linux;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@link BzImage#load(Path, Path)}: the unpacked kernel kept in the cache directory and used from there. */
class KernelCacheTest {
    private static List<Path> cached(Path dir) throws Exception {
        try (Stream<Path> files = Files.list(dir)) {
            return files.toList();
        }
    }

    @Test
    void theUnpackedKernelIsKeptAndReadBack(@TempDir Path dir) throws Exception {
        Path file = dir.resolve("vmlinuz-9.9.9-test");
        byte[] elf = LinuxBootTest.elf(0x1000000, 8192);
        Files.write(file, LinuxBootTest.bzImage(elf));
        Path cache = dir.resolve("cache");

        BzImage first = BzImage.load(file, cache);
        List<Path> kept = cached(cache);
        assertEquals(1, kept.size(), kept.toString());
        assertTrue(kept.get(0).getFileName().toString().matches("vmlinux-vmlinuz-9\\.9\\.9-test-[0-9a-f]{16}\\.elf"),
                kept.toString());
        assertArrayEquals(elf, Files.readAllBytes(kept.get(0)), "the cache holds the payload's ELF");

        // The second load reads the cache: an ELF put there under that name is what it loads.
        byte[] other = LinuxBootTest.elf(0x2000000, 4096);
        Files.write(kept.get(0), other);
        BzImage second = BzImage.load(file, cache);
        assertEquals(0x1000000, first.vmlinux().entry());
        assertEquals(0x2000000, second.vmlinux().entry());
    }

    @Test
    void aDamagedCacheEntryIsUnpackedAgain(@TempDir Path dir) throws Exception {
        Path file = dir.resolve("vmlinuz-9.9.9-test");
        Files.write(file, LinuxBootTest.bzImage(LinuxBootTest.elf(0x1000000, 8192)));
        Path cache = dir.resolve("cache");
        BzImage.load(file, cache);
        Path kept = cached(cache).get(0);
        Files.write(kept, new byte[] {1, 2, 3});
        assertEquals(0x1000000, BzImage.load(file, cache).vmlinux().entry());
        assertEquals(8192 + 120, Files.size(kept), "rewritten");
    }

    @Test
    void aCacheThatCannotBeWrittenOnlyCostsTheUnpacking(@TempDir Path dir) throws Exception {
        Path file = dir.resolve("vmlinuz-9.9.9-test");
        Files.write(file, LinuxBootTest.bzImage(LinuxBootTest.elf(0x1000000, 8192)));
        Path notADirectory = Files.writeString(dir.resolve("plain-file"), "x");
        assertEquals(0x1000000, BzImage.load(file, notADirectory.resolve("cache")).vmlinux().entry());
        assertTrue(Files.isRegularFile(notADirectory));
    }
}
