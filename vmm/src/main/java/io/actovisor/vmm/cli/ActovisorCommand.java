package io.actovisor.vmm.cli;

import io.actovisor.vmm.BuildInfo;
import io.actovisor.vmm.runtime.RunCommand;
import java.io.PrintStream;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Optional;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.ParentCommand;

/**
 * The {@code ./actovisor} command line: one picocli command per verb, {@code -h/--help} on each, options only on
 * the commands they belong to, and the exit codes of {@link ExitCode}.
 */
@Command(name = "actovisor", mixinStandardHelpOptions = true, versionProvider = ActovisorCommand.Version.class,
        sortOptions = false, usageHelpAutoWidth = true,
        description = "An actor-based VMM: runs a KVM VM and manages it through its REST API.",
        exitCodeListHeading = "%nExit codes:%n",
        exitCodeList = {"0:done", "1:the operation failed (refused by the VMM, no VMM answers, the VM failed)",
            "2:usage, an invalid VM definition, or this host cannot run it (no KVM)"},
        subcommands = {ActovisorCommand.Run.class, ActovisorCommand.Validate.class, ActovisorCommand.Status.class,
            ActovisorCommand.Balloon.class, ActovisorCommand.Vfio.class, CommandLine.HelpCommand.class},
        footerHeading = "%nDemos:%n",
        footer = "  coherence-demo, vfio-edu-demo: run by the demos module (see their --help).")
public final class ActovisorCommand implements Callable<Integer> {
    final PrintStream out;
    final PrintStream err;

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    private ActovisorCommand(PrintStream out, PrintStream err) {
        this.out = out;
        this.err = err;
    }

    /** The command line writing to {@code out} and {@code err}; {@code execute(args)} returns the exit code. */
    public static CommandLine commandLine(PrintStream out, PrintStream err) {
        CommandLine cli = new CommandLine(new ActovisorCommand(out, err));
        cli.setOut(new PrintWriter(out, true, StandardCharsets.UTF_8));
        cli.setErr(new PrintWriter(err, true, StandardCharsets.UTF_8));
        // A failure is one line naming what failed, never a stack trace.
        cli.setExecutionExceptionHandler((e, line, parsed) -> {
            line.getErr().println("actovisor " + line.getCommandName() + ": " + e.getMessage());
            line.getErr().flush();
            return e instanceof IllegalArgumentException ? ExitCode.USAGE : ExitCode.FAILED;
        });
        return cli;
    }

    /** Bare {@code ./actovisor}: the usage, and exit 2 since no command was given. */
    @Override
    public Integer call() {
        spec.commandLine().usage(spec.commandLine().getErr());
        spec.commandLine().getErr().flush();
        return ExitCode.USAGE;
    }

    /** The version of this build (see {@link BuildInfo}). */
    public static String version() {
        return BuildInfo.version();
    }

    static final class Version implements CommandLine.IVersionProvider {
        @Override
        public String[] getVersion() {
            return new String[] {"actovisor " + version(), "Java " + System.getProperty("java.version")};
        }
    }

    @Command(name = "run", mixinStandardHelpOptions = true,
            description = "Run a VM until it stops: the embedded default VM without FILE. Exits 2 when this host "
                    + "cannot run it (no usable /dev/kvm).")
    static final class Run implements Callable<Integer> {
        @ParentCommand
        ActovisorCommand parent;

        @Parameters(arity = "0..1", paramLabel = "FILE", description = "a VM definition (HOCON)")
        Path file;

        @Override
        public Integer call() {
            return RunCommand.run(Optional.ofNullable(file), parent.out, parent.err);
        }
    }

    @Command(name = "validate", mixinStandardHelpOptions = true,
            description = "Print every error of a VM definition (exit 2), or the normalized definition (exit 0).")
    static final class Validate implements Callable<Integer> {
        @ParentCommand
        ActovisorCommand parent;

        @Parameters(paramLabel = "FILE", description = "a VM definition (HOCON)")
        Path file;

        @Override
        public Integer call() {
            return RunCommand.validate(file, parent.out, parent.err);
        }
    }

    @Command(name = "status", mixinStandardHelpOptions = true,
            description = "The running VM's state, and its balloon where it has one.")
    static final class Status implements Callable<Integer> {
        @ParentCommand
        ActovisorCommand parent;

        @Mixin
        ApiOptions api;

        @Override
        public Integer call() throws Exception {
            return ClientCommands.status(api.client(), parent.out, parent.err);
        }
    }

    @Command(name = "balloon", mixinStandardHelpOptions = true, description = "Set the balloon target.")
    static final class Balloon implements Callable<Integer> {
        @ParentCommand
        ActovisorCommand parent;

        @Mixin
        ApiOptions api;

        @Option(names = "--amount-mib", required = true, paramLabel = "N",
                description = "the balloon size in MiB (memory taken from the guest)")
        long amountMib;

        @Override
        public Integer call() throws Exception {
            return ClientCommands.balloon(api.client(), amountMib, parent.out, parent.err);
        }
    }

    @Command(name = "vfio", mixinStandardHelpOptions = true,
            description = "Hot-attach or detach a VFIO group the VM's definition declares.",
            subcommands = {Vfio.Attach.class, Vfio.Detach.class})
    static final class Vfio implements Callable<Integer> {
        @ParentCommand
        ActovisorCommand parent;

        @CommandLine.Spec
        CommandLine.Model.CommandSpec spec;

        @Override
        public Integer call() {
            throw new CommandLine.ParameterException(spec.commandLine(), "vfio needs attach or detach");
        }

        @Command(name = "attach", mixinStandardHelpOptions = true, description = "Attach group GROUP.")
        static final class Attach implements Callable<Integer> {
            @ParentCommand
            Vfio vfio;

            @Mixin
            ApiOptions api;

            @Parameters(paramLabel = "GROUP", description = "the group's id in the VM definition")
            String group;

            @Override
            public Integer call() throws Exception {
                return ClientCommands.vfio(api.client(), true, group, vfio.parent.out, vfio.parent.err);
            }
        }

        @Command(name = "detach", mixinStandardHelpOptions = true, description = "Detach group GROUP.")
        static final class Detach implements Callable<Integer> {
            @ParentCommand
            Vfio vfio;

            @Mixin
            ApiOptions api;

            @Parameters(paramLabel = "GROUP", description = "the group's id in the VM definition")
            String group;

            @Override
            public Integer call() throws Exception {
                return ClientCommands.vfio(api.client(), false, group, vfio.parent.out, vfio.parent.err);
            }
        }
    }
}
