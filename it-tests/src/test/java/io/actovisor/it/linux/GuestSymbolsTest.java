package io.actovisor.it.linux;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Naming guest addresses from System.map and /proc/kallsyms text. */
class GuestSymbolsTest {
    @TempDir
    Path dir;

    @Test
    void namesAddressesByTheTextSymbolBeforeThem() throws Exception {
        Path map = dir.resolve("System.map-6.1.0-test");
        Files.writeString(map, """
                ffffffff81000000 T _text
                ffffffff81001000 t do_one_initcall
                ffffffff82000000 D some_data
                """);
        GuestSymbols symbols = GuestSymbols.ofKernel(map);
        int added = symbols.add("""
                grep -E '^[0-9a-f]+ [tT] .*\\[' /proc/kallsyms
                ffffffffc0495000 t virtblk_done\t[virtio_blk]
                ffffffffc0496000 T virtqueue_get_buf\t[virtio_ring]
                0000000000000000 t hidden\t[virtio_mmio]
                """);
        assertEquals(2, added, "two module text symbols (a zero address is a hidden one)");
        assertEquals("do_one_initcall+0x10", symbols.describe(0xffffffff81001010L));
        assertEquals("do_one_initcall+0xfff000", symbols.describe(0xffffffff82000000L), "data is not text");
        assertEquals("virtblk_done+0x20c [virtio_blk]", symbols.describe(0xffffffffc049520cL));
        assertEquals("?", symbols.describe(0xffffffff80000000L));
        assertEquals(GuestSymbols.ofKernel(dir.resolve("none")).describe(0xffffffff81001010L), "?");
        assertEquals(Path.of("/boot/System.map-6.1.0-57-amd64"),
                GuestSymbols.systemMapOf(Path.of("/boot/vmlinuz-6.1.0-57-amd64")));
    }
}
