package io.actovisor.memory.testing;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.Optional;

/**
 * Where the tests that need KVM run. By default natively where {@code /dev/kvm} exists, otherwise inside the emulated
 * KVM host (a QEMU TCG guest with an SVM CPU and the kvm modules, run by it-tests). The switch (system property
 * {@value #PROPERTY} or environment variable {@value #VARIABLE}) overrides it: {@code emulated} forces the emulated
 * host even where {@code /dev/kvm} exists, {@code none} behaves as a machine without KVM at all, so that the
 * skip-with-reason and {@link NativeRequirement} paths can be exercised anywhere. The root pom's
 * {@code kvm-emulated-*} profiles exclude the {@value #TAG} tag from the module runs on exactly the same conditions
 * ({@link #runsEmulated()}).
 */
public final class KvmHost {
    /** The system property that chooses the KVM test host. */
    public static final String PROPERTY = "actovisor.kvm";
    /** The environment variable that chooses the KVM test host (the property wins). */
    public static final String VARIABLE = "ACTOVISOR_KVM";
    /** The JUnit tag of every test class that needs {@code /dev/kvm}. */
    public static final String TAG = "kvm";
    /** The device the native tests open. */
    public static final Path DEVICE = Path.of("/dev/kvm");

    /** What the switch asks for. */
    public enum Choice {
        /** Natively where {@code /dev/kvm} exists, else in the emulated host. */
        AUTO,
        /** In the emulated host, even where {@code /dev/kvm} exists. */
        EMULATED,
        /** Nowhere: every KVM test is skipped (or fails under {@code ACTOVISOR_REQUIRE_NATIVE=1}). */
        NONE
    }

    private KvmHost() {
    }

    /** The switch's value; an unknown value is an error that names it. */
    public static Choice choice() {
        String raw = Optional.ofNullable(System.getProperty(PROPERTY)).orElse(System.getenv(VARIABLE));
        if (raw == null || raw.isBlank()) {
            return Choice.AUTO;
        }
        try {
            return Choice.valueOf(raw.trim().toUpperCase(Locale.ROOT));
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(PROPERTY + " / " + VARIABLE + " must be auto, emulated or none, was '"
                    + raw + "'", e);
        }
    }

    /**
     * Whether the module test runs leave the {@value #TAG}-tagged classes out (the root pom's {@code kvm-emulated-*}
     * profiles, on the same conditions): {@code /dev/kvm} is missing or the switch says {@code emulated}. it-tests'
     * emulated-host engine then reports them: run in the emulated host, or skipped under {@code none}.
     */
    public static boolean leftOutOfModuleRuns() {
        return choice() == Choice.EMULATED || !Files.exists(DEVICE);
    }

    /** Whether the {@value #TAG}-tagged classes run in the emulated host instead of their module's own test run. */
    public static boolean runsEmulated() {
        return leftOutOfModuleRuns() && choice() != Choice.NONE;
    }

    /**
     * Why a test must not use KVM here although the native probe may say it can: the switch turned it off. Otherwise
     * {@code nativeCause} (the probe's answer, e.g. {@code Kvm.unavailabilityCause()}).
     */
    public static Optional<String> unavailabilityCause(Optional<String> nativeCause) {
        if (choice() == Choice.NONE) {
            return Optional.of("KVM is switched off by " + PROPERTY + "=none / " + VARIABLE + "=none");
        }
        return nativeCause.map(cause -> cause + hint());
    }

    /** What to do about a missing or unusable {@code /dev/kvm}. */
    static String hint() {
        if (!Files.exists(DEVICE)) {
            return cpuFlag().isPresent()
                    ? " (the CPU has " + cpuFlag().get() + ": load kvm_intel or kvm_amd)"
                    : " (the CPU offers no vmx/svm: enable nested virtualization for this machine, or run the KVM "
                            + "tests in the emulated host, which needs qemu-system-x86, linux-image-amd64 and "
                            + "busybox-static)";
        }
        if (!Files.isReadable(DEVICE) || !Files.isWritable(DEVICE)) {
            return " (" + DEVICE + " is not read-write for this user: join the kvm group)";
        }
        return "";
    }

    /** The virtualization flag of this CPU ({@code vmx} or {@code svm}), if /proc/cpuinfo shows one. */
    static Optional<String> cpuFlag() {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/cpuinfo"))) {
                if (line.startsWith("flags")) {
                    for (String flag : line.substring(line.indexOf(':') + 1).trim().split("\\s+")) {
                        if (flag.equals("vmx") || flag.equals("svm")) {
                            return Optional.of(flag);
                        }
                    }
                    return Optional.empty();
                }
            }
        } catch (java.io.IOException e) {
            return Optional.empty();
        }
        return Optional.empty();
    }
}
