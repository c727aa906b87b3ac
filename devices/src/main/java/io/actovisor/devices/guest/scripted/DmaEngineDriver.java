package io.actovisor.devices.guest.scripted;

import static io.actovisor.devices.dma.DmaEngine.*;

import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;

/**
 * A driver for actovisor's emulated DMA engine, as the firmware's workload uses it: program source, length and
 * mode, ring the doorbell, poll {@code STATUS} until the transfer ends, read the result or the error code.
 */
public final class DmaEngineDriver {
    /** How a transfer ended: {@code ok} with the checksum (0 for a copy), or not with the engine's error code. */
    public record Transfer(boolean ok, long value) {
    }

    private final RegisterBus bus;

    public DmaEngineDriver(RegisterBus bus) {
        this.bus = bus;
    }

    /** Whether the engine answers its ID register with its magic. */
    public CompletionStage<Boolean> present() {
        return bus.read(ID, 8).thenApply(id -> id == MAGIC);
    }

    /** Checksum {@code length} bytes at IOVA {@code source} through the engine's IOMMU. */
    public CompletionStage<Transfer> checksum(long source, long length) {
        return start(source, 0, length, MODE_CHECKSUM);
    }

    /** Copy {@code length} bytes from IOVA {@code source} to IOVA {@code destination}. */
    public CompletionStage<Transfer> copy(long source, long destination, long length) {
        return start(source, destination, length, MODE_COPY);
    }

    private CompletionStage<Transfer> start(long source, long destination, long length, long mode) {
        return bus.write(SOURCE, 8, source).thenCompose(v -> bus.write(DESTINATION, 8, destination))
                .thenCompose(v -> bus.write(LENGTH, 8, length)).thenCompose(v -> bus.write(MODE, 8, mode))
                .thenCompose(v -> bus.write(DOORBELL, 8, 1)).thenCompose(v -> awaitEnd());
    }

    private CompletionStage<Transfer> awaitEnd() {
        return bus.read(STATUS, 8).thenCompose(status -> {
            if (status == STATUS_BUSY) {
                return awaitEnd();
            }
            if (status == STATUS_DONE) {
                return bus.read(RESULT, 8).thenApply(r -> new Transfer(true, r));
            }
            if (status == STATUS_ERROR) {
                return bus.read(ERROR, 8).thenApply(e -> new Transfer(false, e));
            }
            return CompletableFuture.completedFuture(new Transfer(false, -1));
        });
    }
}
