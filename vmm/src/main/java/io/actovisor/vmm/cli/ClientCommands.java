package io.actovisor.vmm.cli;

import java.io.IOException;
import java.io.PrintStream;
import java.net.ConnectException;

/** {@code status}, {@code balloon} and {@code vfio attach|detach}: the CLI client of a running VMM's API. */
final class ClientCommands {
    private ClientCommands() {
    }

    /** {@code GET /vm}, then {@code GET /balloon} where the VM has a balloon (400 says it has none). */
    static int status(ApiClient client, PrintStream out, PrintStream err) throws IOException, InterruptedException {
        ApiClient.Reply vm = send(client, "GET", "/vm", null);
        if (!vm.ok()) {
            return refused("status", vm, err);
        }
        out.println(vm.body());
        ApiClient.Reply balloon = send(client, "GET", "/balloon", null);
        if (balloon.ok()) {
            out.println(balloon.body());
        } else if (balloon.status() != 400) {
            return refused("status", balloon, err);
        }
        return ExitCode.OK;
    }

    static int balloon(ApiClient client, long amountMib, PrintStream out, PrintStream err)
            throws IOException, InterruptedException {
        ApiClient.Reply reply = send(client, "PATCH", "/balloon", "{\"amount_mib\": " + amountMib + "}");
        if (!reply.ok()) {
            return refused("balloon", reply, err);
        }
        out.println("balloon target set to " + amountMib + " MiB");
        return ExitCode.OK;
    }

    static int vfio(ApiClient client, boolean attach, String group, PrintStream out, PrintStream err)
            throws IOException, InterruptedException {
        ApiClient.Reply reply = send(client, attach ? "PUT" : "DELETE", "/vfio/groups/" + group, null);
        if (!reply.ok()) {
            return refused("vfio", reply, err);
        }
        out.println(reply.body());
        return ExitCode.OK;
    }

    private static ApiClient.Reply send(ApiClient client, String method, String path, String body)
            throws IOException, InterruptedException {
        try {
            return client.send(method, path, body);
        } catch (ConnectException e) {
            throw new IOException("no VMM answers at " + client.base() + " (connection refused)", e);
        }
    }

    private static int refused(String command, ApiClient.Reply reply, PrintStream err) {
        err.println("actovisor " + command + ": the VMM answered " + reply.status() + ": " + reply.body());
        return ExitCode.FAILED;
    }
}
