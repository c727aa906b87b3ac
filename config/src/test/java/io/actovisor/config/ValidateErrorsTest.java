package io.actovisor.config;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Random;
import java.util.regex.Pattern;
import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.Combinators;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * What {@code validate} reports: every error at its file and line, sorted by line, values as written, secrets
 * redacted, and never a stack trace or a Java exception class name, whatever the input.
 */
class ValidateErrorsTest {
    private static final Pattern CLASS_NAME = Pattern.compile(
            // A qualified class name (packages, then a capitalized class: "io.actovisor.config.Foo"), not a key
            // that happens to start with a package word ("io.containers" after a mutation cut "vfio").
            "\\b(?:java|javax|com|org|io|scala)\\.(?:[a-z0-9_]+\\.)+[A-Z][\\w$]*|\\w+(?:Exception|Error)\\b(?!\\s+in\\b)");
    private static final String VALID = """
            actovisor.vm {
              name = "demo"
              vcpus = 2
              memory = [
                { name = "ram", kind = ram, base = "0x0", size = 64 MiB, backing = anonymous }
                { name = "balloon-mmio", kind = mmio, base = "0xd0001000", size = 4 KiB, device = "balloon" }
              ]
              guest { program = "workload", workload-mib = 2 }
              vfio.containers = [
                { name = "c0", backend = model, groups = [ { id = "g0", attach-at-start = true } ] }
              ]
              balloon { enabled = true, initial-target = 0, stats-polling-interval = 2s, mmio-base = "0xd0001000" }
              api { host = "127.0.0.1", port = 0, token = "s3cret-token" }
            }
            """;

    @TempDir
    Path dir;

    private static List<ConfigError> errorsOf(String hocon) {
        try {
            VmSpecParser.parseString(hocon);
            return List.of();
        } catch (ConfigValidationException e) {
            return e.errors();
        }
    }

    private static void assertWellReported(List<ConfigError> errors) {
        int previous = 0;
        for (ConfigError e : errors) {
            assertFalse(e.path() == null || e.path().isBlank(), "no path: " + e);
            assertTrue(e.line() >= 1, "no line: " + e);
            if (e.line() < previous) {
                throw new AssertionError("not sorted by line: " + errors);
            }
            previous = e.line();
            assertFalse(CLASS_NAME.matcher(e.toString()).find(), "a Java class name: " + e);
            // A secret is the value of a token key, alone or inside a rendered object (a mutation that renames the
            // key makes its value an ordinary string).
            if (e.path().endsWith(".token") || e.value() != null && e.value().contains("\"token\"")) {
                assertFalse(e.toString().contains("s3cret-token"), "a secret shown: " + e);
            }
        }
    }

    @Test
    void the_valid_definition_is_valid() {
        assertEquals(List.of(), errorsOf(VALID));
    }

    @Property(tries = 300)
    void mutated_definitions_are_reported_with_path_and_line(@ForAll("mutated") String hocon) {
        assertWellReported(errorsOf(hocon));
    }

    @Property(tries = 200)
    void random_text_is_reported_with_path_and_line(@ForAll("garbage") String hocon) {
        assertWellReported(errorsOf(hocon));
    }

    @Provide
    Arbitrary<String> garbage() {
        return Arbitraries.oneOf(Arbitraries.strings().ofMaxLength(200),
                Arbitraries.strings().withChars("{}[]=:,\"$.\n #/0123456789abcxyz").ofMaxLength(200),
                Arbitraries.strings().withChars("{}[]=:,\"$.\n ").ofMaxLength(60).map(s -> "actovisor.vm " + s));
    }

    /** The valid definition with a few characters or tokens inserted, deleted or replaced at random places. */
    @Provide
    Arbitrary<String> mutated() {
        return Combinators.combine(Arbitraries.integers().between(1, 4), Arbitraries.longs())
                .as((count, seed) -> {
                    Random random = new Random(seed);
                    List<String> tokens = List.of("${X}", "${?Y}", "include required(\"missing.conf\")", "1.5",
                            "99999999999999999999", "-1", "\"", "{", "}", "[", "]", "=", ",", "\n", "bogus = 1",
                            "vcpus = 0.5", "program = \"wrokload\"", "token = 7", "0x", "MiB", "null", "true",
                            "\\", "\u0000");
                    StringBuilder text = new StringBuilder(VALID);
                    for (int i = 0; i < count; i++) {
                        int at = random.nextInt(text.length() + 1);
                        int delete = Math.min(random.nextInt(6), text.length() - at);
                        text.replace(at, at + delete, random.nextBoolean() ? tokens.get(random.nextInt(tokens.size()))
                                : "");
                    }
                    return text.toString();
                });
    }

    @Test
    void an_unresolved_substitution_is_an_error_at_its_line() {
        List<ConfigError> errors = errorsOf("actovisor.vm {\n  name = demo\n  vcpus = ${CPUS}\n}\n");
        assertEquals(1, errors.size(), errors.toString());
        assertEquals(3, errors.get(0).line(), errors.toString());
        assertTrue(errors.get(0).message().contains("${CPUS}"), errors.toString());
        assertWellReported(errors);
    }

    /**
     * Substitutions met before {@code resolve()}, where the key check renders them: an unknown key whose value
     * concatenates one (CI's jqwik run found {@code wrokloadsize "${X}"iB}), one nested in an object or a list, or the
     * whole VM block.
     */
    @Test
    void substitutions_under_unknown_keys_or_as_the_vm_block_are_errors_not_exceptions() {
        for (String hocon : List.of(
                "actovisor.vm {\n  name = demo\n  guest { wrokloadsize \"${X}\"iB }\n}\n",
                "actovisor.vm {\n  name = demo\n  bogus { a = ${X}, token = ${?T} }\n}\n",
                "actovisor.vm {\n  name = demo\n  bogus = [ 1, ${X}, { b = ${X} } ]\n}\n",
                "actovisor.vm {\n  name = demo\n  bogus = ${X} ${Y}\n}\n",
                "actovisor.vm = ${X}\n",
                "actovisor = ${X}\n",
                "actovisor.vm = { name = demo } ${X}\n")) {
            List<ConfigError> errors = errorsOf(hocon);
            assertFalse(errors.isEmpty(), hocon);
            assertWellReported(errors);
        }
        List<ConfigError> unknown = errorsOf(
                "actovisor.vm {\n  name = demo\n  guest { wrokloadsize \"${X}\"iB }\n}\n");
        assertTrue(unknown.stream().anyMatch(e -> e.line() == 3 && e.toString().contains("${X}")), unknown.toString());
    }

    @Test
    void a_vm_block_written_as_a_substitution_is_read_and_its_keys_checked() {
        String base = "base { name = demo, vcpus = 1, memory = [ { name = ram, kind = ram, base = \"0x0\", "
                + "size = 16 MiB, backing = anonymous } ] }\n";
        assertEquals(List.of(), errorsOf(base + "actovisor.vm = ${base}\n"));
        List<ConfigError> errors = errorsOf(base + "actovisor.vm = ${base} { vcpuz = 2 }\n");
        assertEquals(1, errors.size(), errors.toString());
        assertTrue(errors.get(0).path().endsWith("vcpuz") && errors.get(0).message().contains("vcpus"),
                errors.toString());
        assertWellReported(errors);
    }

    @Test
    void semantic_errors_carry_their_line_sorted_and_values_as_written() {
        List<ConfigError> errors = errorsOf("""
                actovisor.vm {
                  name = demo
                  zzz = 1
                  vcpus = 1.5
                  guest.program = "wrokload"
                  aaa = 2
                  vfio.containers = [ { name = c, backend = model, max-mappings = 99999999999999999999 } ]
                  api { token = "s3cret-token", bogus-key = 1 }
                }
                """);
        assertWellReported(errors);
        assertEquals(List.of(3, 4, 5, 6, 7, 8), errors.stream().map(ConfigError::line).toList(), errors.toString());
        assertTrue(errors.get(1).toString().contains("vcpus = 1.5: must be a whole number"), errors.toString());
        assertTrue(errors.get(2).toString().contains("did you mean 'workload'?"), errors.toString());
        assertTrue(errors.get(4).toString().contains("= 99999999999999999999"), errors.toString());
    }

    @Test
    void a_secret_in_an_error_is_redacted() {
        List<ConfigError> errors = errorsOf("actovisor.vm { api { token = [ \"s3cret-token\" ] } }");
        assertWellReported(errors);
        assertTrue(errors.stream().anyMatch(e -> e.path().endsWith("api.token") && e.value().equals("<redacted>")),
                errors.toString());
    }

    @Test
    void files_that_are_not_hocon_are_errors_with_a_line() throws IOException {
        Path binary = dir.resolve("garbage.conf");
        byte[] bytes = new byte[4096];
        new Random(7).nextBytes(bytes);
        Files.write(binary, bytes);
        Path missingInclude = Files.writeString(dir.resolve("include.conf"),
                "include required(\"" + dir.resolve("nope.conf") + "\")\nactovisor.vm { name = x }\n");
        Path huge = dir.resolve("huge.conf");
        StringBuilder big = new StringBuilder("actovisor.vm {\n");
        while (big.length() < 5 << 20) {
            big.append("  # a comment line to make the file large\n");
        }
        big.append("  name = \"").append("x".repeat(5 << 20)).append("\"\n  vcpus = 1.5\n");
        Files.writeString(huge, big.append("}\n"), StandardCharsets.UTF_8);
        for (Path file : List.of(binary, missingInclude, huge)) {
            ConfigValidationException e = assertThrows(ConfigValidationException.class,
                    () -> VmSpecParser.parseFile(file));
            assertFalse(e.errors().isEmpty(), file.toString());
            assertWellReported(e.errors());
            assertTrue(e.errors().get(0).toString().startsWith(file.toString()), e.errors().get(0).toString());
            assertTrue(e.getMessage().length() < 10_000, "long values are abbreviated");
        }
    }

    @Test
    void the_bundled_program_list_matches_the_firmware_sources() throws IOException {
        Path firmware = Path.of("..", "devices", "src", "main", "firmware");
        java.util.Set<String> programs = new java.util.TreeSet<>();
        try (var files = Files.list(firmware)) {
            for (Path c : files.filter(f -> f.toString().endsWith(".c")).toList()) {
                var m = Pattern.compile("^PROGRAM\\(\"([^\"]+)\"", Pattern.MULTILINE).matcher(Files.readString(c));
                while (m.find()) {
                    programs.add(m.group(1));
                }
            }
        }
        assertEquals(programs, new java.util.TreeSet<>(VmSpecParser.BUNDLED_PROGRAMS));
    }
}
