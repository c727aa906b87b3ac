package io.actovisor.vmm.runtime;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/** {@code run} on a host without a usable /dev/kvm: one message that says what to do, exit 2, nothing allocated. */
class KvmPreflightTest {
    @Test
    void a_missing_device_says_to_load_kvm_or_enable_nested_virtualization() {
        String m = KvmPreflight.problem(Map.of(), () -> Optional.of("cannot use /dev/kvm: open(/dev/kvm) failed: "
                + "ENOENT (2)")).orElseThrow();
        assertTrue(m.contains("modprobe kvm_intel") && m.contains("nested virtualization"), m);
        assertTrue(m.contains("./actovisor coherence-demo"), m);
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
    void run_without_kvm_prints_one_message_once_and_exits_2() throws Exception {
        ProcessBuilder pb = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-cp", System.getProperty("java.class.path"), "io.actovisor.vmm.Main", "run");
        pb.environment().put("ACTOVISOR_KVM", "none");
        Process p = pb.start();
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
}
