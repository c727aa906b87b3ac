package io.actovisor.vmm;

import java.io.PrintStream;

/** The {@code ./actovisor} command line. */
public final class Main {
    private Main() {
    }

    public static void main(String[] args) {
        System.exit(run(args, System.out, System.err));
    }

    static int run(String[] args, PrintStream out, PrintStream err) {
        if (args.length == 0 || args[0].equals("help") || args[0].equals("--help")) {
            usage(out);
            return 0;
        }
        err.println("actovisor: unknown command '" + args[0] + "'");
        usage(err);
        return 2;
    }

    static void usage(PrintStream out) {
        out.println("usage: ./actovisor <command> [options]");
        out.println("  help                 this text");
    }
}
