package io.actovisor.cluster;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermission;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.SecureRandom;
import java.util.HexFormat;
import java.util.Set;

/**
 * A node's API token, in a file only its user may read (mode 0600). The node creates the file with a fresh random
 * token when it is missing; it refuses to start with a file that its group or others can read or write, as the
 * single-host API's token scheme does.
 */
public final class ApiToken {
    private ApiToken() {
    }

    /** The token in {@code file}, created if missing. */
    public static String loadOrCreate(Path file) {
        try {
            if (!Files.exists(file)) {
                Files.createDirectories(file.toAbsolutePath().getParent());
                byte[] bytes = new byte[24];
                new SecureRandom().nextBytes(bytes);
                String token = HexFormat.of().formatHex(bytes);
                Files.createFile(file, PosixFilePermissions.asFileAttribute(
                        PosixFilePermissions.fromString("rw-------")));
                Files.writeString(file, token + "\n");
                return token;
            }
            return read(file);
        } catch (IOException e) {
            throw new IllegalArgumentException("actovisor.cluster.api.token-file = " + file + ": cannot create the "
                    + "token file: " + e.getMessage(), e);
        }
    }

    /** The token in an existing file, which only its owner may read. */
    public static String read(Path file) {
        try {
            Set<PosixFilePermission> perms = Files.getPosixFilePermissions(file);
            for (PosixFilePermission p : perms) {
                if (p.name().startsWith("GROUP") || p.name().startsWith("OTHERS")) {
                    throw new IllegalArgumentException("token file " + file + " has mode "
                            + PosixFilePermissions.toString(perms) + ": only its owner may read it (chmod 600 "
                            + file + ")");
                }
            }
            String token = Files.readString(file).trim();
            if (token.isEmpty()) {
                throw new IllegalArgumentException("token file " + file + " is empty");
            }
            return token;
        } catch (IOException e) {
            throw new IllegalArgumentException("token file " + file + ": cannot read it: " + e.getMessage(), e);
        }
    }
}
