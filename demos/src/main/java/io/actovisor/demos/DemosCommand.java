package io.actovisor.demos;

import com.typesafe.config.ConfigFactory;
import io.actovisor.demos.coherence.CoherenceDemo;
import io.actovisor.demos.coherence.EduVfioDemo;
import java.io.PrintStream;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParentCommand;

/**
 * The demos' command line, named {@code actovisor} as the launcher presents it: {@code coherence-demo} and
 * {@code vfio-edu-demo}, {@code -h/--help} on each. A failure is one line naming what failed, never a stack trace.
 */
@Command(name = "actovisor", mixinStandardHelpOptions = true, usageHelpAutoWidth = true,
        description = "The demos: the stale-DMA bug and its fixes, on this host's real pins.",
        subcommands = {DemosCommand.CoherenceDemoCommand.class, DemosCommand.VfioEduDemoCommand.class,
            CommandLine.HelpCommand.class})
public final class DemosCommand implements Callable<Integer> {
    /** Usage: no command given (picocli gives an unknown command or option the same code). */
    static final int USAGE = CommandLine.ExitCode.USAGE;

    final PrintStream out;
    final PrintStream err;

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    private DemosCommand(PrintStream out, PrintStream err) {
        this.out = out;
        this.err = err;
    }

    /** The command line writing to {@code out} and {@code err}; {@code execute(args)} returns the exit code. */
    public static CommandLine commandLine(PrintStream out, PrintStream err) {
        CommandLine cli = new CommandLine(new DemosCommand(out, err));
        cli.setOut(new PrintWriter(out, true, StandardCharsets.UTF_8));
        cli.setErr(new PrintWriter(err, true, StandardCharsets.UTF_8));
        cli.setExecutionExceptionHandler((e, line, parsed) -> {
            line.getErr().println("actovisor " + line.getCommandName() + ": " + e.getMessage());
            line.getErr().flush();
            return 1;
        });
        return cli;
    }

    @Override
    public Integer call() {
        spec.commandLine().usage(spec.commandLine().getErr());
        spec.commandLine().getErr().flush();
        return USAGE;
    }

    @Command(name = "coherence-demo", mixinStandardHelpOptions = true,
            description = "A balloon discard under a pin, with and without the inhibitor, on real io_uring pins: without it the device reads stale memory (no KVM needed).")
    static final class CoherenceDemoCommand implements Callable<Integer> {
        @ParentCommand
        DemosCommand parent;

        @Override
        public Integer call() {
            return CoherenceDemo.run(ConfigFactory.load(), parent.out, parent.err);
        }
    }

    @Command(name = "vfio-edu-demo", mixinStandardHelpOptions = true,
            description = "A balloon discard under a VFIO type1 pin, with and without the inhibitor, where /dev/vfio has QEMU's edu device: without it the device reads stale memory.")
    static final class VfioEduDemoCommand implements Callable<Integer> {
        @ParentCommand
        DemosCommand parent;

        @Option(names = "--device", paramLabel = "BDF", description = "the edu device's PCI address")
        String device;

        @Override
        public Integer call() {
            List<String> args = new ArrayList<>(List.of("vfio-edu-demo"));
            if (device != null) {
                args.addAll(List.of("--device", device));
            }
            return EduVfioDemo.run(ConfigFactory.load(), args.toArray(String[]::new), parent.out, parent.err);
        }
    }
}
