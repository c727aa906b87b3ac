package io.actovisor.vmm.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.vmm.Main;
import io.actovisor.vmm.api.ApiAccess;
import io.actovisor.vmm.api.ApiServer;
import io.actovisor.vmm.api.RecordingVm;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.http.javadsl.ServerBinding;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The command line: picocli parsing, help, version, exit codes, and how a client finds its VMM. */
class CliTest {
    private static final ActorTestKit KIT = ActorTestKit.create();

    @TempDir
    Path dir;

    @AfterAll
    static void shutdown() {
        KIT.shutdownTestKit();
    }

    /** Exit code, stdout, stderr. */
    record Result(int code, String out, String err) {
    }

    private static Result run(String... args) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int code = Main.run(args, new PrintStream(out, true, StandardCharsets.UTF_8),
                new PrintStream(err, true, StandardCharsets.UTF_8));
        return new Result(code, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
    }

    @Test
    void bare_actovisor_prints_the_usage_and_exits_2() {
        Result r = run();
        assertEquals(ExitCode.USAGE, r.code());
        assertTrue(r.err().contains("Usage: actovisor") && r.err().contains("Exit codes:"), r.err());
    }

    @Test
    void version_and_help_exit_0() {
        Result version = run("--version");
        assertEquals(0, version.code());
        assertTrue(version.out().startsWith("actovisor "), version.out());
        assertFalse(version.out().contains("unknown"), version.out());
        for (String command : List.of("run", "validate", "status", "balloon", "vfio")) {
            for (String flag : List.of("-h", "--help")) {
                Result help = run(command, flag);
                assertEquals(0, help.code(), command + " " + flag + ": " + help.err());
                assertTrue(help.out().contains("Usage: actovisor " + command), help.out());
            }
        }
        assertEquals(0, run("vfio", "attach", "--help").code());
        assertEquals(0, run("help", "balloon").code());
    }

    @Test
    void validate_redacts_the_token_and_reports_errors_with_file_and_line() throws Exception {
        Path good = Files.writeString(dir.resolve("good.conf"), "actovisor.vm { name = small, api.token = \"s3cret\" }");
        Result ok = run("validate", good.toString());
        assertEquals(0, ok.code(), ok.err());
        assertTrue(ok.out().contains("token = \"<redacted>\""), ok.out());
        assertFalse(ok.out().contains("s3cret"), ok.out());
        Path bad = Files.writeString(dir.resolve("bad.conf"), "actovisor.vm {\n  name = small\n  vcpus = 1.5\n}\n");
        Result refused = run("validate", bad.toString());
        assertEquals(ExitCode.USAGE, refused.code());
        assertTrue(refused.err().contains(bad + ":3: actovisor.vm.vcpus = 1.5: must be a whole number"), refused.err());
    }

    @Test
    void options_only_where_they_belong() {
        Result r = run("status", "--amount-mib", "4");
        assertEquals(ExitCode.USAGE, r.code());
        assertTrue(r.err().contains("Unknown options: '--amount-mib'"), r.err());
        assertEquals(ExitCode.USAGE, run("run", "--api", "http://x").code());
        assertEquals(ExitCode.USAGE, run("balloon").code(), "--amount-mib is required");
        assertEquals(ExitCode.USAGE, run("balloon", "--amount-mib", "ten").code());
        assertEquals(ExitCode.USAGE, run("validate").code());
        assertEquals(ExitCode.USAGE, run("frobnicate").code());
        assertEquals(ExitCode.USAGE, run("vfio").code());
    }

    @Test
    void status_works_without_a_balloon_and_finds_the_only_vm_by_its_access_file() throws Exception {
        RecordingVm vm = new RecordingVm();
        vm.noBalloon = true;
        ServerBinding binding = ApiServer.bind(KIT.system(), vm, "127.0.0.1", 0, false, "tok", Optional.empty())
                .toCompletableFuture().get(10, TimeUnit.SECONDS);
        try {
            String url = "http://127.0.0.1:" + binding.localAddress().getPort();
            Map<String, String> env = Map.of("XDG_RUNTIME_DIR", dir.toString(), "HOME", "/nonexistent");
            Path access = ApiAccess.directory(env);
            assertEquals(dir.resolve("actovisor"), access);
            ApiOptions options = new ApiOptions();
            IllegalStateException none = org.junit.jupiter.api.Assertions.assertThrows(IllegalStateException.class,
                    () -> options.client(env));
            assertTrue(none.getMessage().startsWith("no running VMM found in " + access), none.getMessage());

            Path file = new ApiAccess("test", url, "tok", ProcessHandle.current().pid()).write(access);
            assertEquals("rw-------", PosixFilePermissions.toString(Files.getPosixFilePermissions(file)));
            assertEquals("rwx------", PosixFilePermissions.toString(Files.getPosixFilePermissions(access)));
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            ByteArrayOutputStream err = new ByteArrayOutputStream();
            int code = ClientCommands.status(options.client(env), new PrintStream(out, true, StandardCharsets.UTF_8),
                    new PrintStream(err, true, StandardCharsets.UTF_8));
            assertEquals(0, code, err.toString(StandardCharsets.UTF_8));
            assertTrue(out.toString(StandardCharsets.UTF_8).contains("\"state\" : \"Running\""), out.toString());
            assertEquals(List.of("vm"), vm.calls);

            new ApiAccess("other", "http://127.0.0.1:1", "x", ProcessHandle.current().pid()).write(access);
            IllegalStateException two = org.junit.jupiter.api.Assertions.assertThrows(IllegalStateException.class,
                    () -> options.client(env));
            assertEquals("several VMs run (other, test); choose one with --vm NAME", two.getMessage());
            options.vm = "test";
            assertEquals(url, options.client(env).base().toString());
        } finally {
            binding.unbind().toCompletableFuture().get(10, TimeUnit.SECONDS);
        }
    }
}
