package io.actovisor.vmm.runtime;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import io.actovisor.actors.balloon.BalloonSettings;
import io.actovisor.actors.vm.VmTopology;
import io.actovisor.config.ConfigError;
import io.actovisor.config.ConfigValidationException;
import io.actovisor.config.GuestKind;
import io.actovisor.config.VmSpec;
import io.actovisor.config.VmSpecParser;
import io.actovisor.config.VmSpecRenderer;
import java.io.PrintStream;
import io.actovisor.vmm.api.ApiAccess;
import io.actovisor.vmm.api.model.BalloonConfig;
import io.actovisor.vmm.api.model.MachineConfig;
import io.actovisor.vmm.api.model.VmConfig;
import io.actovisor.vmm.cli.ExitCode;
import java.nio.file.Path;
import java.util.Map;
import java.util.Optional;

/** {@code ./actovisor run [FILE]} and {@code ./actovisor validate FILE}. */
public final class RunCommand {
    private RunCommand() {
    }

    /** Exit code of {@code validate} and {@code run} when the definition has errors, or KVM is missing. */
    public static final int INVALID = ExitCode.USAGE;

    public static int validate(Path file, PrintStream out, PrintStream err) {
        try {
            // The normalized definition without its secret: the token is shown as <redacted>.
            out.print(VmSpecRenderer.render(VmSpecParser.parseFile(file))
                    .replaceAll("(?m)^(\\s*token = )\"(?:[^\"\\\\]|\\\\.)+\"$", "$1\"<redacted>\""));
            return ExitCode.OK;
        } catch (ConfigValidationException e) {
            printErrors(file.toString(), e, err);
            return INVALID;
        }
    }

    /** {@code run [FILE]}: validate, check that this host can run it, allocate, run until the VM stops. */
    public static int run(Optional<Path> file, PrintStream out, PrintStream err) {
        VmSpec spec;
        try {
            spec = file.isPresent() ? VmSpecParser.parseFile(file.get()) : VmSpecParser.defaultVm();
        } catch (ConfigValidationException e) {
            printErrors(file.map(Path::toString).orElse("the embedded default VM"), e, err);
            return INVALID;
        }
        // Before anything is allocated: the guest this host can run, or one message that says what is missing and
        // what to do (guest.kind = auto falls back to the scripted guest by itself).
        Optional<String> noKvm;
        try {
            noKvm = KvmPreflight.cause(System.getenv());
        } catch (IllegalArgumentException e) {
            err.println("actovisor run: " + e.getMessage());
            return ExitCode.USAGE;
        }
        GuestChoice choice;
        try {
            choice = GuestChoice.choose(spec.guest().kind(), noKvm);
        } catch (GuestChoice.GuestUnavailableException e) {
            err.println("actovisor run: " + (spec.guest().kind() != GuestKind.SCRIPTED && noKvm.isPresent()
                    ? KvmPreflight.message(noKvm.get()) : e.getMessage()));
            return ExitCode.USAGE;
        }
        Optional<String> linuxProblem = linuxProblem(choice.kind(), io.actovisor.kernel.kvm.Kvm.emulatesGuestKernels(),
                System.getenv());
        if (linuxProblem.isPresent()) {
            err.println("actovisor run: " + linuxProblem.get());
            return ExitCode.USAGE;
        }
        Config config = ConfigFactory.load();
        VmTopology topology;
        try {
            topology = VmBuilder.topology(spec, BalloonSettings.create(config));
        } catch (io.actovisor.devices.boot.linux.LinuxBootException e) {
            err.println("actovisor run: VM " + spec.name() + " cannot boot its Linux guest: " + e.getMessage());
            return ExitCode.FAILED;
        } catch (RuntimeException e) {
            err.println("actovisor run: cannot allocate VM " + spec.name() + ": " + e.getMessage());
            return ExitCode.FAILED;
        }
        out.println("actovisor: " + choice.announcement());
        out.println("actovisor: starting VM " + spec.name() + " (" + (spec.ramBytes() >> 20) + " MiB RAM, "
                + spec.containers().size() + " VFIO containers)");
        return VmLauncher.run(topology, VmBuilder.groupContainers(spec), vmConfig(spec), new VmLauncher.Api(spec.api().enabled(),
                spec.api().host(), spec.api().port(), spec.api().allowRemote(),
                spec.api().token().filter(t -> !t.isBlank()).orElseGet(ApiAccess::newToken)),
                spec.balloon().initialTargetBytes(), config, out, err);
    }

    /** The environment variable that makes {@code run} boot Linux on KVM-PVM all the same. */
    public static final String LINUX_ON_EMULATED_KVM_ENV = "ACTOVISOR_LINUX_ON_EMULATED_KVM";

    /**
     * Why {@code kind} cannot run here, as one line: a stock Linux kernel on KVM-PVM (which emulates guest kernel
     * code) boots for minutes and then stops on an instruction KVM's emulator lacks; empty otherwise, or when
     * {@code ACTOVISOR_LINUX_ON_EMULATED_KVM=1} asks to try anyway.
     */
    static Optional<String> linuxProblem(GuestKind kind, boolean kvmEmulatesGuestKernels, Map<String, String> env) {
        if (kind != GuestKind.LINUX || !kvmEmulatesGuestKernels || "1".equals(env.get(LINUX_ON_EMULATED_KVM_ENV))) {
            return Optional.empty();
        }
        return Optional.of("guest.kind = linux cannot boot here: /dev/kvm is KVM-PVM (/sys/module/kvm_pvm), which "
                + "runs a stock kernel through its instruction emulator and stops it with KVM_INTERNAL_ERROR_EMULATION "
                + "before user space; run it on hardware-assisted KVM, or set " + LINUX_ON_EMULATED_KVM_ENV
                + "=1 to try anyway (docs/linux-guest.md)");
    }

    /** What {@code GET /vm/config} shows of {@code spec}: no secrets. */
    static VmConfig vmConfig(VmSpec spec) {
        VmSpec.Balloon b = spec.balloon();
        return new VmConfig(spec.name(), new MachineConfig(spec.vcpus(), spec.ramBytes() >> 20, false, false),
                b.enabled() ? new BalloonConfig(b.initialTargetBytes() >> 20, b.deflateOnOom(),
                        Math.max(1, b.statsPollingInterval().toSeconds())) : null,
                spec.guest().program(), spec.containers().stream().map(c -> new VmConfig.Container(c.name(),
                        c.backend().name().toLowerCase(java.util.Locale.ROOT).replace('_', '-'),
                        c.discard().configName(),
                        c.groups().stream().map(VmSpec.Group::id).toList())).toList());
    }

    private static void printErrors(String what, ConfigValidationException e, PrintStream err) {
        err.println("actovisor: " + what + " has " + e.errors().size() + (e.errors().size() == 1 ? " error:"
                : " errors:"));
        for (ConfigError error : e.errors()) {
            err.println("  " + error);
        }
    }
}
