package io.actovisor.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ApiTokenTest {
    @TempDir
    Path dir;

    @Test
    void aMissingFileIsCreatedOwnerOnlyAndReadBack() throws Exception {
        Path file = dir.resolve("node/api-token");
        String token = ApiToken.loadOrCreate(file);
        assertEquals("rw-------", PosixFilePermissions.toString(Files.getPosixFilePermissions(file)));
        assertEquals(token, ApiToken.loadOrCreate(file));
        assertTrue(token.length() >= 32);
    }

    @Test
    void aFileOthersCanReadIsRefused() throws Exception {
        Path file = dir.resolve("token");
        Files.writeString(file, "secret\n");
        Files.setPosixFilePermissions(file, PosixFilePermissions.fromString("rw-r--r--"));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> ApiToken.read(file));
        assertTrue(e.getMessage().contains("chmod 600"), e.getMessage());
    }
}
