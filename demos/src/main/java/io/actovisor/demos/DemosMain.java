package io.actovisor.demos;

import java.io.PrintStream;

/**
 * The demos' entry point: {@code ./actovisor coherence-demo} and {@code ./actovisor vfio-edu-demo} run this class
 * (the launcher runs the module that owns each command; the VMM does not depend on the demos).
 */
public final class DemosMain {
    private DemosMain() {
    }

    public static void main(String[] args) {
        // Initialize SLF4J before anything can log, so that no logger is created during its initialization.
        org.slf4j.LoggerFactory.getILoggerFactory();
        System.exit(run(args, System.out, System.err));
    }

    /** Run the command line {@code args}; returns the exit code. */
    public static int run(String[] args, PrintStream out, PrintStream err) {
        return DemosCommand.commandLine(out, err).execute(args);
    }
}
