package io.actovisor.vmm.runtime;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code run} on a host without a usable /dev/kvm: one message that says what to do, exit 2, nothing allocated. */
class KvmPreflightTest {
    @Test
    void a_missing_device_says_to_load_kvm_or_enable_nested_virtualization() {
        String m = KvmPreflight.problem(Map.of(), () -> Optional.of("cannot use /dev/kvm: open(/dev/kvm) failed: "
                + "ENOENT (2)")).orElseThrow();
        assertTrue(m.contains("modprobe kvm_intel") && m.contains("nested virtualization"), m);
        assertTrue(m.contains("guest.kind = scripted") && m.contains("./actovisor coherence-demo"), m);
    }

    @Test
    void eacces_says_to_join_the_kvm_group() {
        String m = KvmPreflight.problem(Map.of(), () -> Optional.of("open(/dev/kvm) failed: EACCES (13)"))
                .orElseThrow();
        assertTrue(m.contains("join the kvm group"), m);
        assertFalse(m.contains("modprobe"), m);
    }

    @Test
    void the_switch_pretends_kvm_is_missing_and_bad_values_are_refused() {
        assertEquals(Optional.empty(), KvmPreflight.problem(Map.of("ACTOVISOR_KVM", "native"), Optional::empty));
        assertEquals(Optional.empty(), KvmPreflight.problem(Map.of("ACTOVISOR_KVM", "emulated"), Optional::empty));
        assertTrue(KvmPreflight.problem(Map.of("ACTOVISOR_KVM", "none"), Optional::empty).isPresent());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> KvmPreflight.problem(Map.of("ACTOVISOR_KVM", "maybe"), Optional::empty));
        assertEquals("ACTOVISOR_KVM = 'maybe': expected native, emulated or none", e.getMessage());
    }

    @Test
    void run_of_a_firmware_guest_without_kvm_prints_one_message_once_and_exits_2(@TempDir Path dir) throws Exception {
        Path file = dir.resolve("firmware.conf");
        Files.writeString(file, "actovisor.vm { name = \"fw\", guest.kind = firmware }\n");
        Process p = vmm(Map.of("ACTOVISOR_KVM", "none"), "run", file.toString());
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        String err = new String(p.getErrorStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(60, TimeUnit.SECONDS));
        assertEquals(2, p.exitValue(), err);
        assertEquals("", out);
        List<String> lines = err.lines().toList();
        assertEquals(3, lines.size(), err);
        assertTrue(lines.get(0).startsWith("actovisor run: this host cannot run a KVM guest: "), err);
        assertEquals(1, err.split("cannot run a KVM guest", -1).length - 1, err);
        assertFalse(err.contains("Exception") || err.contains("\tat "), err);
    }

    @Test
    void run_of_the_default_vm_without_kvm_falls_back_to_the_scripted_guest(@TempDir Path dir) throws Exception {
        Path log = dir.resolve("stderr.log");
        Process p = vmm(Map.of("ACTOVISOR_KVM", "none"), log, "run");
        List<String> console = new java.util.ArrayList<>();
        try (BufferedReader out = new BufferedReader(new InputStreamReader(p.getInputStream(),
                StandardCharsets.UTF_8))) {
            String line;
            boolean matched = false;
            while (!matched && (line = out.readLine()) != null) {
                console.add(line);
                matched = line.contains("round") && line.endsWith("match");
            }
            assertTrue(matched, "the scripted guest printed no matching round before its output ended: "
                    + Files.readString(log));
        } finally {
            p.destroy(); // SIGTERM: a clean stop
        }
        assertTrue(p.waitFor(60, TimeUnit.SECONDS));
        String err = Files.readString(log);
        assertEquals(0, p.exitValue(), err);
        assertEquals(1, console.stream().filter(l -> l.startsWith("actovisor: guest.kind = auto: running the scripted "
                + "guest, because KVM is unavailable")).count(), String.join("\n", console));
        assertFalse(err.contains("cannot run a KVM guest"), err);
    }

    private static Process vmm(Map<String, String> env, String... args) throws Exception {
        return vmm(env, null, args);
    }

    private static Process vmm(Map<String, String> env, Path errorLog, String... args) throws Exception {
        List<String> command = new java.util.ArrayList<>(List.of(
                Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-cp", System.getProperty("java.class.path"), "io.actovisor.vmm.Main"));
        command.addAll(List.of(args));
        ProcessBuilder pb = new ProcessBuilder(command);
        pb.environment().putAll(env);
        pb.environment().put("XDG_RUNTIME_DIR", Files.createTempDirectory("actovisor-run").toString());
        if (errorLog != null) {
            pb.redirectError(errorLog.toFile());
        }
        return pb.start();
    }
}
