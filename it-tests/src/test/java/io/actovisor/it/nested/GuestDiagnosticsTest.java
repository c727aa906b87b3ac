package io.actovisor.it.nested;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.ByteArrayOutputStream;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The host side of the nested guest's diagnostics port against a socket that plays the guest's responder, and the
 * responder's shell syntax (the real responder runs in {@code NestedGuestTest}'s hung guest).
 */
class GuestDiagnosticsTest {
    @TempDir
    Path dir;

    /** A one-shot responder: reads a line, answers {@code answer} (in two writes), returns the line it read. */
    private CompletableFuture<String> respond(ServerSocketChannel server, String answer) {
        return CompletableFuture.supplyAsync(() -> {
            try (SocketChannel client = server.accept()) {
                ByteArrayOutputStream line = new ByteArrayOutputStream();
                ByteBuffer one = ByteBuffer.allocate(1);
                while (client.read(one) > 0 && one.get(0) != '\n') {
                    line.write(one.get(0));
                    one.clear();
                }
                byte[] bytes = answer.getBytes(StandardCharsets.UTF_8);
                client.write(ByteBuffer.wrap(bytes, 0, bytes.length / 2));
                Thread.sleep(200);
                client.write(ByteBuffer.wrap(bytes, bytes.length / 2, bytes.length - bytes.length / 2));
                return line.toString(StandardCharsets.US_ASCII);
            } catch (Exception e) {
                throw new IllegalStateException(e);
            }
        });
    }

    @Test
    void asksAndReadsUntilTheEndLine() throws Exception {
        Path socket = GuestDiagnostics.socket(dir).orElseThrow();
        try (ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX)) {
            server.bind(UnixDomainSocketAddress.of(socket));
            String body = GuestDiagnostics.BEGIN + " at 12.3 s\nMemTotal: 3000 kB\n" + GuestDiagnostics.END;
            CompletableFuture<String> asked = respond(server, body + "\ntrailing noise");
            String text = GuestDiagnostics.request(Optional.of(socket), Duration.ofSeconds(30));
            assertEquals(GuestDiagnostics.REQUEST, asked.get(30, TimeUnit.SECONDS));
            assertEquals(body, text, "everything up to the end line, nothing after it");
        }
    }

    @Test
    void aResponderThatStopsHalfWayGivesWhatArrivedAndSaysSo() throws Exception {
        Path socket = GuestDiagnostics.socket(dir).orElseThrow();
        try (ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX)) {
            server.bind(UnixDomainSocketAddress.of(socket));
            respond(server, GuestDiagnostics.BEGIN + "\nMemTotal: 3000 kB\n");
            String text = GuestDiagnostics.request(Optional.of(socket), Duration.ofSeconds(30));
            assertTrue(text.startsWith(GuestDiagnostics.BEGIN + "\nMemTotal: 3000 kB"), text);
            assertTrue(text.contains("diagnostics incomplete: no " + GuestDiagnostics.END), text);
        }
    }

    @Test
    void withoutASocketItSaysWhy() {
        assertTrue(GuestDiagnostics.request(Optional.empty(), Duration.ofSeconds(1)).contains("too long"));
        assertTrue(GuestDiagnostics.request(Optional.of(dir.resolve("none.sock")), Duration.ofSeconds(1))
                .contains("QEMU is not listening on " + dir.resolve("none.sock")));
        assertTrue(GuestDiagnostics.socket(dir.resolve("x".repeat(120))).isEmpty(), "a path a socket address cannot "
                + "hold");
    }

    @Test
    void theResponderIsValidShell() throws Exception {
        Path busybox = Path.of("/bin/busybox");
        assumeTrue(Files.isExecutable(busybox), "no busybox here to check the shell syntax with");
        Path script = dir.resolve("responder.sh");
        Files.writeString(script, "command=1\n" + GuestDiagnostics.responder());
        Process check = new ProcessBuilder(busybox.toString(), "sh", "-n", script.toString()).redirectErrorStream(true)
                .start();
        String out = new String(check.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(check.waitFor(30, TimeUnit.SECONDS));
        assertEquals(0, check.exitValue(), "busybox sh -n: " + out);
    }
}
