package io.actovisor.it.nested;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.memory.testing.GuestImages;
import io.actovisor.memory.testing.NativeRequirement;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The harness itself: the archive it writes, the module order it computes, and what it does with a hung guest. */
class NestedGuestTest {
    /** Entries read back from a newc archive: name, mode, data. */
    private record Entry(String name, int mode, byte[] data) {
    }

    private static List<Entry> parse(byte[] archive) {
        List<Entry> entries = new ArrayList<>();
        int at = 0;
        while (true) {
            String header = new String(archive, at, 110, StandardCharsets.US_ASCII);
            assertEquals("070701", header.substring(0, 6), "magic at offset " + at);
            int mode = Integer.parseInt(header.substring(14, 22), 16);
            int size = Integer.parseInt(header.substring(54, 62), 16);
            int nameSize = Integer.parseInt(header.substring(94, 102), 16);
            String name = new String(archive, at + 110, nameSize - 1, StandardCharsets.UTF_8);
            assertEquals(0, archive[at + 110 + nameSize - 1], "name of " + name + " ends with NUL");
            int data = align(at + 110 + nameSize);
            if (name.equals("TRAILER!!!")) {
                assertEquals(archive.length, align(data), "nothing after the trailer");
                return entries;
            }
            entries.add(new Entry(name, mode, java.util.Arrays.copyOfRange(archive, data, data + size)));
            at = align(data + size);
        }
    }

    private static int align(int offset) {
        return (offset + 3) & ~3;
    }

    @Test
    void cpioWritesNewcEntriesWithParentsFirstAndPadding() {
        byte[] archive = new Cpio().file("/lib/modules/a.ko", 0644, "abcde".getBytes(StandardCharsets.UTF_8))
                .file("init", 0755, "#!/bin/sh\n".getBytes(StandardCharsets.UTF_8)).symlink("bin/sh", "busybox")
                .directory("lib").finish();
        List<Entry> entries = parse(archive);
        assertEquals(List.of("lib", "lib/modules", "lib/modules/a.ko", "init", "bin", "bin/sh"),
                entries.stream().map(Entry::name).toList());
        assertEquals(0040755, entries.get(0).mode());
        assertEquals(0100644, entries.get(2).mode());
        assertEquals("abcde", new String(entries.get(2).data(), StandardCharsets.UTF_8));
        assertEquals(0100755, entries.get(3).mode());
        assertEquals(0120777, entries.get(5).mode());
        assertEquals("busybox", new String(entries.get(5).data(), StandardCharsets.UTF_8));
    }

    @Test
    void modulesLoadAfterTheirDependenciesAndBuiltinsAreSkipped(@TempDir Path dir) throws Exception {
        Files.writeString(dir.resolve("modules.dep"), String.join("\n",
                "kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/fscache/fscache.ko kernel/fs/netfs/netfs.ko",
                "kernel/net/9p/9pnet.ko:",
                "kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko",
                "kernel/fs/netfs/netfs.ko:",
                "kernel/drivers/vfio/pci/vfio-pci.ko: kernel/drivers/vfio/vfio.ko",
                "kernel/drivers/vfio/vfio.ko:", ""));
        Files.writeString(dir.resolve("modules.builtin"), "kernel/drivers/virtio/virtio_pci.ko\n");
        List<String> order = NestedGuest.moduleOrder(dir, List.of("virtio_pci", "9p", "vfio_pci", "netfs"))
                .stream().map(p -> dir.relativize(p).toString()).toList();
        assertEquals(List.of("kernel/net/9p/9pnet.ko", "kernel/fs/netfs/netfs.ko", "kernel/fs/fscache/fscache.ko",
                "kernel/fs/9p/9p.ko", "kernel/drivers/vfio/vfio.ko", "kernel/drivers/vfio/pci/vfio-pci.ko"), order);
        IllegalStateException missing = assertThrows(IllegalStateException.class,
                () -> NestedGuest.moduleOrder(dir, List.of("no_such_module")));
        assertTrue(missing.getMessage().contains("no_such_module"), missing.getMessage());
    }

    @Test
    void staticExecutablesAreToldFromDynamicOnes(@TempDir Path dir) throws Exception {
        assertFalse(GuestImages.isStatic(Path.of(System.getProperty("java.home"), "bin", "java")),
                "the JDK's launcher needs ld.so");
        Path text = dir.resolve("not-elf");
        Files.writeString(text, "#!/bin/sh\n");
        assertFalse(GuestImages.isStatic(text));
    }

    @Test
    void aHungGuestIsKilledAndReportedWithItsConsole() throws Exception {
        GuestImages.Facilities facilities = NestedGuest.probe();
        NativeRequirement.require("a nested QEMU guest", facilities.unavailabilityCause());
        assertTrue(GuestImages.isStatic(facilities.busybox().orElseThrow()));
        Path work = Path.of("target", "nested-hung").toAbsolutePath();
        long qemusBefore = qemuChildren();
        NestedGuest.GuestFailure failure = assertThrows(NestedGuest.GuestFailure.class, () -> NestedGuest.run(
                facilities, work, "echo about to hang >&2; sleep 600", Duration.ofSeconds(120),
                Duration.ofSeconds(10)));
        assertTrue(failure.getMessage().startsWith("the guest did not finish within 10 s"), failure.getMessage());
        assertTrue(failure.getMessage().contains(NestedGuest.BOOTED), "the console is in the report");
        assertTrue(failure.getMessage().contains("about to hang"), "the command's stderr is on the console");
        // Before it was killed, the guest described itself: memory, the command's tasks, the blocked ones.
        String message = failure.getMessage();
        assertTrue(message.contains(GuestDiagnostics.BEGIN) && message.contains(GuestDiagnostics.END),
                "the diagnostics are in the report: " + message);
        assertTrue(message.contains("MemTotal:"), "with /proc/meminfo: " + message);
        assertTrue(Pattern.compile("(?m)^\\d+/\\d+ sleep S ").matcher(message).find(), "with the command's "
                + "child, sleeping: " + message);
        assertTrue(message.contains("sysrq: Show Blocked State"), "with the kernel's blocked tasks: " + message);
        assertEquals(qemusBefore, qemuChildren(), "QEMU was killed");
        assertFalse(Files.exists(work.resolve("diagnostics.sock")), "the diagnostics socket was removed");
    }

    @Test
    void aKvmHostWhoseCpuLacksSvmFailsAtModuleLoadAndLeavesNothingBehind() throws Exception {
        GuestImages.Facilities facilities = NestedGuest.probe();
        NativeRequirement.require("a nested QEMU guest", facilities.unavailabilityCause());
        Path work = Path.of("target", "nested-no-svm").toAbsolutePath();
        long qemusBefore = qemuChildren();
        NestedGuest.GuestFailure failure;
        // A later -cpu wins in QEMU: the emulated KVM host without svm, so kvm_amd refuses to load.
        try (NestedGuest.Running guest = NestedGuest.start(NestedGuest.Kind.KVM_HOST, facilities, work, "true",
                List.of("-cpu", "qemu64,-svm"))) {
            failure = assertThrows(NestedGuest.GuestFailure.class, () -> guest.awaitBoot(Duration.ofSeconds(240)));
        }
        assertTrue(failure.getMessage().startsWith("the guest failed during module load"), failure.getMessage());
        assertTrue(failure.getMessage().contains("insmod kvm-amd"), "the console names the module: "
                + failure.getMessage());
        assertEquals(qemusBefore, qemuChildren(), "QEMU was killed");
        assertFalse(Files.exists(work.resolve("initramfs.cpio")), "the initramfs was removed");
    }

    private static long qemuChildren() {
        return ProcessHandle.current().children().filter(p -> p.info().command().orElse("").contains("qemu"))
                .count();
    }
}
