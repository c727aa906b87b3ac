package io.actovisor.devices.boot;

import io.actovisor.kernel.kvm.KvmException;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * The guest firmware image: the one built from {@code devices/src/main/firmware} into the jar, or a file. It is a
 * flat binary loaded at {@link BootLayout#FIRMWARE_BASE} and entered in 64-bit mode at its first byte.
 */
public final class GuestFirmware {
    /** Where the build puts the bundled image on the classpath. */
    public static final String BUNDLED_RESOURCE = "/io/actovisor/devices/boot/firmware/actovisor-guest.bin";

    private GuestFirmware() {
    }

    /** The bundled image; a clear error if the build did not produce it. */
    public static byte[] bundled() {
        try (InputStream in = GuestFirmware.class.getResourceAsStream(BUNDLED_RESOURCE)) {
            if (in == null) {
                throw new KvmException("the bundled guest firmware " + BUNDLED_RESOURCE + " is not on the classpath; "
                        + "build the devices module (it compiles src/main/firmware with gcc)");
            }
            return in.readAllBytes();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read the bundled guest firmware", e);
        }
    }

    /** The image in {@code file}. */
    public static byte[] load(Path file) {
        try {
            return Files.readAllBytes(file);
        } catch (IOException e) {
            throw new KvmException("cannot read guest firmware " + file + ": " + e.getMessage(), e);
        }
    }
}
