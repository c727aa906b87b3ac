package io.actovisor.vmm.runtime;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.config.GuestKind;
import io.actovisor.kernel.kvm.Kvm;
import io.actovisor.memory.sys.ProcessResources;
import io.actovisor.vmm.cli.ExitCode;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Map;
import java.util.Optional;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

/**
 * {@code run} of a Linux guest where {@code /dev/kvm} is KVM-PVM, which cannot boot a stock kernel: one line that
 * says so and what to do, before anything is allocated.
 */
class LinuxOnEmulatedKvmTest {
    @Test
    void linuxOnKvmPvmIsRefusedWithOneLine() {
        String m = RunCommand.linuxProblem(GuestKind.LINUX, true, Map.of()).orElseThrow();
        assertTrue(m.contains("KVM-PVM") && m.contains("ACTOVISOR_LINUX_ON_EMULATED_KVM=1"), m);
        assertTrue(!m.contains("\n"), "one line: " + m);
    }

    @Test
    void otherGuestsOtherHostsAndTheSwitchAreLetThrough() {
        assertEquals(Optional.empty(), RunCommand.linuxProblem(GuestKind.LINUX, false, Map.of()));
        assertEquals(Optional.empty(), RunCommand.linuxProblem(GuestKind.FIRMWARE, true, Map.of()));
        assertEquals(Optional.empty(), RunCommand.linuxProblem(GuestKind.SCRIPTED, true, Map.of()));
        assertEquals(Optional.empty(), RunCommand.linuxProblem(GuestKind.LINUX, true,
                Map.of(RunCommand.LINUX_ON_EMULATED_KVM_ENV, "1")));
    }

    /** The example itself, run on this host when it is KVM-PVM: exit 2, one line on stderr, nothing left open. */
    @Test
    void theLinuxExampleOnThisKvmPvmHost() {
        Assumptions.assumeTrue(Kvm.emulatesGuestKernels() && Kvm.unavailabilityCause().isEmpty(),
                "this host's /dev/kvm is not KVM-PVM");
        Assumptions.assumeTrue(!"1".equals(System.getenv(RunCommand.LINUX_ON_EMULATED_KVM_ENV)),
                RunCommand.LINUX_ON_EMULATED_KVM_ENV + "=1 asks to boot anyway");
        ProcessResources before = ProcessResources.snapshot();
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int code = RunCommand.run(Optional.of(Path.of("..", "docs", "examples", "linux.conf")),
                new PrintStream(out, true, StandardCharsets.UTF_8), new PrintStream(err, true, StandardCharsets.UTF_8));
        String error = err.toString(StandardCharsets.UTF_8);
        assertEquals(ExitCode.USAGE, code, error);
        assertEquals("", out.toString(StandardCharsets.UTF_8));
        assertEquals(1, error.lines().count(), error);
        assertTrue(error.startsWith("actovisor run: guest.kind = linux cannot boot here: /dev/kvm is KVM-PVM"), error);
        assertTrue(ProcessResources.snapshot().nativeFdsOpenedSince(before).isEmpty(), "nothing left open");
    }
}
