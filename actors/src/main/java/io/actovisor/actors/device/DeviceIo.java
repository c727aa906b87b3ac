package io.actovisor.actors.device;

import java.util.Objects;

import org.apache.pekko.actor.typed.ActorRef;

/**
 * The protocol between a vCPU and the device that owns an MMIO or port I/O address. An MMIO or PIO region in an
 * address space names its device ({@code MemoryRegion.device()}); the vCPU resolves the address to that region and
 * sends the device a {@link Read} or {@link Write} with the offset into the region, then waits for the reply before
 * it re-enters the guest, as hardware would.
 *
 * <p>A device actor accepts these messages by letting its own protocol extend {@link Command}:
 * {@code public interface Command extends DeviceIo.Command {}}; its behavior is then a
 * {@code Behavior<DeviceIo.Command>} and {@code ref.narrow()} gives the device-specific reference.
 */
public final class DeviceIo {
    private DeviceIo() {
    }

    /** Which bus the access came from. */
    public enum Space {
        MMIO,
        PIO
    }

    /** What a device accepts from a vCPU; device protocols extend it. */
    public interface Command {
    }

    /**
     * A guest read of {@code size} bytes (1, 2, 4 or 8).
     *
     * @param address the guest address (MMIO) or port (PIO) the guest accessed
     * @param offset  {@code address} minus the base of the device's region
     */
    public record Read(Space space, long address, long offset, int size, ActorRef<Result> replyTo) implements Command {
        public Read {
            checkSize(size);
            Objects.requireNonNull(replyTo, "replyTo");
        }
    }

    /**
     * A guest write of the low {@code size} bytes of {@code value}.
     *
     * @param offset {@code address} minus the base of the device's region
     */
    public record Write(Space space, long address, long offset, int size, long value, ActorRef<Result> replyTo)
            implements Command {
        public Write {
            checkSize(size);
            Objects.requireNonNull(replyTo, "replyTo");
        }
    }

    /** A device's answer to a {@link Read} or {@link Write}. */
    public sealed interface Result permits Completed, Failed {
    }

    /** The access completed; for a read, {@code value} holds the bytes read (zero-extended), for a write 0. */
    public record Completed(long value) implements Result {
    }

    /**
     * The device could not complete the access; the vCPU logs {@code reason}, reads all ones and goes on, as a bus
     * would for an access nobody claims.
     */
    public record Failed(String reason) implements Result {
    }

    private static void checkSize(int size) {
        if (size != 1 && size != 2 && size != 4 && size != 8) {
            throw new IllegalArgumentException("access size must be 1, 2, 4 or 8 bytes, was " + size);
        }
    }
}
