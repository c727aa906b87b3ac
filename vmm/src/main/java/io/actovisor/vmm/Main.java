package io.actovisor.vmm;

import io.actovisor.vmm.cli.ActovisorCommand;
import java.io.PrintStream;

/** The {@code ./actovisor} command line (see {@link ActovisorCommand}). */
public final class Main {
    private Main() {
    }

    public static void main(String[] args) {
        // Initialize SLF4J before anything can log, so that no logger is created during its initialization.
        org.slf4j.LoggerFactory.getILoggerFactory();
        System.exit(run(args, System.out, System.err));
    }

    /** Run the command line {@code args}; returns the exit code (see {@link io.actovisor.vmm.cli.ExitCode}). */
    public static int run(String[] args, PrintStream out, PrintStream err) {
        return ActovisorCommand.commandLine(out, err).execute(args);
    }
}
