package io.actovisor.vmm.runtime;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import io.actovisor.actors.balloon.BalloonSettings;
import io.actovisor.actors.vm.VmTopology;
import io.actovisor.config.ConfigError;
import io.actovisor.config.ConfigValidationException;
import io.actovisor.config.VmSpec;
import io.actovisor.config.VmSpecParser;
import io.actovisor.config.VmSpecRenderer;
import java.io.PrintStream;
import java.nio.file.Path;

/** {@code ./actovisor run [FILE]} and {@code ./actovisor validate FILE}. */
public final class RunCommand {
    private RunCommand() {
    }

    /** Exit code of {@code validate} when the definition has errors. */
    public static final int INVALID = 2;

    public static int validate(String[] args, PrintStream out, PrintStream err) {
        if (args.length != 2) {
            err.println("usage: ./actovisor validate FILE");
            return INVALID;
        }
        try {
            out.print(VmSpecRenderer.render(VmSpecParser.parseFile(Path.of(args[1]))));
            return 0;
        } catch (ConfigValidationException e) {
            printErrors(args[1], e, err);
            return INVALID;
        }
    }

    public static int run(String[] args, PrintStream out, PrintStream err) {
        if (args.length > 2) {
            err.println("usage: ./actovisor run [FILE]");
            return INVALID;
        }
        VmSpec spec;
        try {
            spec = args.length == 2 ? VmSpecParser.parseFile(Path.of(args[1])) : VmSpecParser.defaultVm();
        } catch (ConfigValidationException e) {
            printErrors(args.length == 2 ? args[1] : "the embedded default VM", e, err);
            return INVALID;
        }
        Config config = ConfigFactory.load();
        VmTopology topology;
        try {
            topology = VmBuilder.topology(spec, BalloonSettings.create(config));
        } catch (io.actovisor.devices.boot.linux.LinuxBootException e) {
            err.println("actovisor run: VM " + spec.name() + " cannot boot its Linux guest: " + e.getMessage());
            return 1;
        } catch (RuntimeException e) {
            err.println("actovisor run: cannot allocate VM " + spec.name() + ": " + e.getMessage());
            return 1;
        }
        out.println("actovisor: starting VM " + spec.name() + " (" + (spec.ramBytes() >> 20) + " MiB RAM, "
                + spec.containers().size() + " VFIO containers)");
        return VmLauncher.run(topology, VmBuilder.groupContainers(spec), new VmLauncher.Api(spec.api().enabled(),
                spec.api().host(), spec.api().port(), spec.api().allowRemote(), spec.api().token()),
                spec.balloon().initialTargetBytes(), config, out, err);
    }

    private static void printErrors(String what, ConfigValidationException e, PrintStream err) {
        err.println("actovisor: " + what + " has " + e.errors().size() + (e.errors().size() == 1 ? " error:"
                : " errors:"));
        for (ConfigError error : e.errors()) {
            err.println("  " + error);
        }
    }
}
