package io.actovisor.vmm.cli;

import java.io.PrintStream;
import java.net.ConnectException;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/** {@code status}, {@code balloon} and {@code vfio attach|detach}: the CLI client of a running VMM's API. */
public final class ClientCommands {
    private ClientCommands() {
    }

    /** Parsed {@code --api URL [--token T]} and the remaining arguments. */
    record Args(String api, Optional<String> token, Optional<String> amountMib, List<String> rest) {
        static Args parse(String[] args, int from) {
            String api = System.getenv().getOrDefault("ACTOVISOR_API", "http://127.0.0.1:8080");
            Optional<String> token = Optional.ofNullable(System.getenv("ACTOVISOR_TOKEN"));
            Optional<String> amount = Optional.empty();
            List<String> rest = new ArrayList<>();
            for (int i = from; i < args.length; i++) {
                switch (args[i]) {
                    case "--api" -> api = value(args, ++i, "--api");
                    case "--token" -> token = Optional.of(value(args, ++i, "--token"));
                    case "--amount-mib" -> amount = Optional.of(value(args, ++i, "--amount-mib"));
                    default -> {
                        if (args[i].startsWith("--")) {
                            throw new IllegalArgumentException("unknown option '" + args[i] + "'");
                        }
                        rest.add(args[i]);
                    }
                }
            }
            return new Args(api, token, amount, rest);
        }

        private static String value(String[] args, int i, String option) {
            if (i >= args.length) {
                throw new IllegalArgumentException(option + " needs a value");
            }
            return args[i];
        }
    }

    /** Run a client command; returns the process exit code. */
    public static int run(String command, String[] args, PrintStream out, PrintStream err) {
        try {
            Args a = Args.parse(args, 1);
            ApiClient client = new ApiClient(a.api(), a.token());
            ApiClient.Reply reply = switch (command) {
                case "status" -> {
                    ApiClient.Reply vm = client.send("GET", "/vm", null);
                    if (!vm.ok()) {
                        yield vm;
                    }
                    out.println(vm.body());
                    yield client.send("GET", "/balloon", null);
                }
                case "balloon" -> {
                    String amount = a.amountMib().orElseThrow(
                            () -> new IllegalArgumentException("balloon needs --amount-mib N"));
                    long mib;
                    try {
                        mib = Long.parseLong(amount);
                    } catch (NumberFormatException e) {
                        throw new IllegalArgumentException("--amount-mib: not a whole number: '" + amount + "'");
                    }
                    yield client.send("PATCH", "/balloon", "{\"amount_mib\": " + mib + "}");
                }
                case "vfio" -> {
                    if (a.rest().size() != 2 || !List.of("attach", "detach").contains(a.rest().get(0))) {
                        throw new IllegalArgumentException("usage: vfio attach|detach --api URL GROUP");
                    }
                    String method = a.rest().get(0).equals("attach") ? "PUT" : "DELETE";
                    yield client.send(method, "/vfio/groups/" + a.rest().get(1), null);
                }
                default -> throw new IllegalArgumentException("unknown client command '" + command + "'");
            };
            (reply.ok() ? out : err).println(reply.body());
            return reply.ok() ? 0 : 1;
        } catch (IllegalArgumentException e) {
            err.println("actovisor " + command + ": " + e.getMessage());
            return 2;
        } catch (ConnectException e) {
            err.println("actovisor " + command + ": no VMM answers at the API address (" + e.getMessage() + ")");
            return 1;
        } catch (java.io.IOException e) {
            err.println("actovisor " + command + ": " + e);
            return 1;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return 1;
        }
    }
}
