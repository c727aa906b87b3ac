package io.actovisor.vmm.api;

import com.fasterxml.jackson.annotation.JsonProperty;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.file.DirectoryStream;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * How to reach one running VMM: its API URL and bearer token, written by {@code run} to a file only its user can
 * read ({@code $XDG_RUNTIME_DIR/actovisor/<vm>.json}, or {@code ~/.cache/actovisor/run/<vm>.json} where
 * {@code XDG_RUNTIME_DIR} is unset) and removed when it stops. The CLI finds it by VM name, or takes the only one.
 *
 * @param vm    the VM's name
 * @param url   the API's base URL, e.g. {@code http://127.0.0.1:41234}
 * @param token the bearer token every request must carry
 * @param pid   the VMM's process id
 */
public record ApiAccess(@JsonProperty("vm") String vm, @JsonProperty("url") String url,
        @JsonProperty("token") String token, @JsonProperty("pid") long pid) {
    private static final ObjectMapper JSON = new ObjectMapper()
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS);
    private static final SecureRandom RANDOM = new SecureRandom();

    /** A fresh random token: 32 bytes, base64url. */
    public static String newToken() {
        byte[] bytes = new byte[32];
        RANDOM.nextBytes(bytes);
        return Base64.getUrlEncoder().withoutPadding().encodeToString(bytes);
    }

    /** The directory of access files for this environment (see the class comment). */
    public static Path directory(Map<String, String> env) {
        String runtime = env.get("XDG_RUNTIME_DIR");
        if (runtime != null && !runtime.isBlank() && Files.isDirectory(Path.of(runtime))) {
            return Path.of(runtime, "actovisor");
        }
        return Path.of(env.getOrDefault("HOME", System.getProperty("user.home")), ".cache", "actovisor", "run");
    }

    /** The file of VM {@code vm} in {@code dir}. */
    public static Path file(Path dir, String vm) {
        return dir.resolve(vm + ".json");
    }

    /**
     * Write this access file into {@code dir} (created 0700), readable and writable only by this user. Refused
     * when a live VMM already holds the name.
     *
     * @return the file, for removal at exit
     */
    public Path write(Path dir) throws IOException {
        Files.createDirectories(dir, PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString(
                "rwx------")));
        Path target = file(dir, vm);
        if (Files.exists(target)) {
            Optional<ApiAccess> other = read(target);
            if (other.isPresent() && other.get().pid() != pid
                    && ProcessHandle.of(other.get().pid()).map(ProcessHandle::isAlive).orElse(false)) {
                throw new FileAlreadyExistsException(target.toString(), null, "a VMM (pid " + other.get().pid()
                        + ") already runs a VM named '" + vm + "'");
            }
        }
        Path tmp = Files.createTempFile(dir, "." + vm, ".tmp", PosixFilePermissions.asFileAttribute(
                PosixFilePermissions.fromString("rw-------")));
        try {
            Files.write(tmp, JSON.writeValueAsBytes(this));
            Files.move(tmp, target, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        } finally {
            Files.deleteIfExists(tmp);
        }
        return target;
    }

    /** The access file at {@code file}, or empty when it is missing or unreadable. */
    public static Optional<ApiAccess> read(Path file) {
        try {
            return Optional.of(JSON.readValue(file.toFile(), ApiAccess.class));
        } catch (IOException e) {
            return Optional.empty();
        }
    }

    /**
     * The access of VM {@code vm}, or of the only VMM with a file in {@code dir} when no name is given.
     *
     * @throws IllegalStateException naming the directory when none or several match
     */
    public static ApiAccess find(Path dir, Optional<String> vm) {
        if (vm.isPresent()) {
            return read(file(dir, vm.get())).orElseThrow(() -> new IllegalStateException("no running VM named '"
                    + vm.get() + "' (no readable " + file(dir, vm.get()) + ")"));
        }
        List<ApiAccess> found = all(dir);
        if (found.isEmpty()) {
            throw new IllegalStateException("no running VMM found in " + dir + "; start one with ./actovisor run, "
                    + "or pass --api URL");
        }
        if (found.size() > 1) {
            throw new IllegalStateException("several VMs run (" + String.join(", ", found.stream().map(ApiAccess::vm)
                    .sorted().toList()) + "); choose one with --vm NAME");
        }
        return found.get(0);
    }

    /** Every readable access file in {@code dir}. */
    public static List<ApiAccess> all(Path dir) {
        List<ApiAccess> out = new ArrayList<>();
        if (!Files.isDirectory(dir)) {
            return out;
        }
        try (DirectoryStream<Path> files = Files.newDirectoryStream(dir, "*.json")) {
            files.forEach(f -> read(f).ifPresent(out::add));
        } catch (IOException e) {
            throw new IllegalStateException("cannot list " + dir + ": " + e.getMessage());
        }
        return out;
    }
}
