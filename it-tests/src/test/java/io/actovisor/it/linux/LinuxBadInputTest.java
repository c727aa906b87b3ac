package io.actovisor.it.linux;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.ConfigFactory;
import io.actovisor.actors.balloon.BalloonSettings;
import io.actovisor.config.VmSpec;
import io.actovisor.config.VmSpecParser;
import io.actovisor.devices.boot.linux.LinuxBootException;
import io.actovisor.memory.sys.ProcessResources;
import io.actovisor.vmm.runtime.VmBuilder;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A kernel that is not a bzImage, an initrd that does not fit, a command line over the kernel's limit: each is
 * refused while the VM is built, before KVM is opened or any vCPU exists, with the file or value and the limit,
 * and leaves nothing behind.
 */
@Tag("kvm")
class LinuxBadInputTest {
    @TempDir
    static Path dir;

    /** Per test, so that a machine without KVM reports each test skipped with the reason, not a class of none. */
    @BeforeEach
    void facilities() {
        LinuxVm.requireFacilities();
    }

    private static String vm(String kernel, String initrd, String cmdline, int ramMib) {
        return """
                actovisor.vm {
                  name = bad
                  memory = [ { name = ram, base = 0, size = %d MiB } ]
                  guest { kind = linux, kernel = "%s", initrd = "%s", cmdline = "%s" }
                  balloon.enabled = false
                  api.enabled = false
                }
                """.formatted(ramMib, kernel, initrd, cmdline);
    }

    private static LinuxBootException refused(String hocon) {
        VmSpec spec = VmSpecParser.parse(ConfigFactory.parseString(hocon));
        ProcessResources before = ProcessResources.snapshot();
        LinuxBootException e = assertThrows(LinuxBootException.class, () -> VmBuilder.topology(spec,
                BalloonSettings.DEFAULT));
        assertTrue(ProcessResources.snapshot().nativeFdsOpenedSince(before).isEmpty(), "nothing left open");
        return e;
    }

    @Test
    void aFileThatIsNotABzImage() throws Exception {
        Path notKernel = Files.write(dir.resolve("not-a-kernel"), new byte[64 * 1024]);
        LinuxBootException e = refused(vm(notKernel.toString(), "none", "", 128));
        assertTrue(e.getMessage().contains(notKernel.toString()) && e.getMessage().contains("not a bzImage"),
                e.getMessage());
    }

    @Test
    void anInitrdThatDoesNotFit() throws Exception {
        Path big = dir.resolve("big.cpio");
        try (var out = Files.newOutputStream(big)) {
            out.write(new byte[100 << 20]);
        }
        LinuxBootException e = refused(vm("auto", big.toString(), "", 128));
        assertTrue(e.getMessage().contains(big.toString()) && e.getMessage().contains("at most"), e.getMessage());
    }

    @Test
    void aCommandLineOverTheLimit() {
        LinuxBootException e = refused(vm("auto", "none", "x".repeat(5000), 128));
        assertTrue(e.getMessage().contains("5000 bytes") && e.getMessage().contains("cmdline_size"),
                e.getMessage());
    }
}
