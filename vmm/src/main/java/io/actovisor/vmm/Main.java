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
        switch (args[0]) {
            case "status", "balloon", "vfio" -> {
                return io.actovisor.vmm.cli.ClientCommands.run(args[0], args, out, err);
            }
            case "run" -> {
                return io.actovisor.vmm.runtime.RunCommand.run(args, out, err);
            }
            case "validate" -> {
                return io.actovisor.vmm.runtime.RunCommand.validate(args, out, err);
            }
            case "coherence-demo" -> {
                return io.actovisor.vmm.coherence.CoherenceDemo.run(com.typesafe.config.ConfigFactory.load(), out,
                        err);
            }
            case "vfio-edu-demo" -> {
                return io.actovisor.vmm.coherence.EduVfioDemo.run(com.typesafe.config.ConfigFactory.load(), args,
                        out, err);
            }
            default -> {
            }
        }
        err.println("actovisor: unknown command '" + args[0] + "'");
        usage(err);
        return 2;
    }

    static void usage(PrintStream out) {
        out.println("usage: ./actovisor <command> [options]");
        out.println("  help                                         this text");
        out.println("  run [FILE]                                   run a VM (the embedded default VM without FILE)");
        out.println("  validate FILE                                print every error, or the normalized VM definition");
        out.println("  coherence-demo                               the seed's bug and its fix on real io_uring pins");
        out.println("  vfio-edu-demo [--device BDF]                 the seed's bug on real VFIO type1 pins with QEMU's edu");
        out.println("  status  --api URL [--token T]                the VM's state and balloon");
        out.println("  balloon --api URL --amount-mib N [--token T] set the balloon target");
        out.println("  vfio attach|detach --api URL GROUP           hot-attach or detach a configured VFIO group");
    }
}
