package io.actovisor.devices.boot.linux;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The newc writer, read back by the system's cpio where it has one, and the module order from modules.dep. */
class NewcArchiveTest {
    @Test
    void entriesAreFourByteAlignedAndEndWithTheTrailer() {
        byte[] archive = new NewcArchive().file("init", 0755, "#!/bin/sh\n".getBytes(StandardCharsets.UTF_8))
                .symlink("bin/sh", "busybox").characterDevice("dev/console", 0600, 5, 1).toByteArray();
        String text = new String(archive, StandardCharsets.ISO_8859_1);
        assertTrue(text.startsWith("070701"));
        assertTrue(text.contains("TRAILER!!!"));
        assertEquals(0, archive.length % 4);
        assertThrows(IllegalArgumentException.class, () -> new NewcArchive().file("a", 0644, new byte[0])
                .file("a", 0644, new byte[0]));
    }

    @Test
    void theSystemCpioListsWhatWasWritten(@TempDir Path dir) throws Exception {
        Optional<Path> cpio = List.of("/usr/bin/cpio", "/bin/cpio").stream().map(Path::of).filter(Files::exists)
                .findFirst();
        Assumptions.assumeTrue(cpio.isPresent(), "no cpio on this machine to read the archive back");
        Path file = dir.resolve("a.cpio");
        Files.write(file, new NewcArchive().file("lib/modules/a.ko", 0644, "abcde".getBytes(StandardCharsets.UTF_8))
                .symlink("bin/sh", "busybox").toByteArray());
        Process p = new ProcessBuilder(cpio.get().toString(), "-t", "-F", file.toString()).redirectErrorStream(true)
                .start();
        String listing = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(30, TimeUnit.SECONDS));
        assertTrue(listing.contains("lib/modules/a.ko") && listing.contains("bin/sh") && listing.contains("lib"),
                listing);
    }

    @Test
    void modulesComeAfterTheirDependenciesAndBuiltinsAreSkipped(@TempDir Path tree) throws Exception {
        Files.writeString(tree.resolve("modules.dep"), """
                kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
                kernel/drivers/virtio/virtio_ring.ko:
                kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
                kernel/drivers/virtio/virtio_balloon.ko.xz: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
                """);
        Files.writeString(tree.resolve("modules.builtin"), "kernel/drivers/char/foo-bar.ko\n");
        List<Path> order = Initramfs.moduleOrder(tree, List.of("virtio_mmio", "virtio-balloon", "foo_bar"));
        assertEquals(List.of("virtio_ring.ko", "virtio.ko", "virtio_mmio.ko", "virtio_balloon.ko.xz"),
                order.stream().map(p -> p.getFileName().toString()).toList());
        LinuxBootException e = assertThrows(LinuxBootException.class, () -> Initramfs.moduleOrder(tree,
                List.of("nonexistent")));
        assertTrue(e.getMessage().contains("nonexistent"), e.getMessage());
    }
}
