package io.actovisor.devices.guest.scripted;

import static io.actovisor.devices.virtio.VirtioMmio.*;

import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;

/**
 * The driver's side of the virtio-mmio transport (version 2): the status handshake, feature negotiation, queue
 * setup, notify and interrupt status/acknowledge, done through the same register accesses the firmware's
 * {@code virtio.c} makes. {@link #initialize} follows the specification's order (reset, ACKNOWLEDGE, DRIVER,
 * features, FEATURES_OK and its check, queues, DRIVER_OK); the single-register operations let a misbehaving script
 * break that order on purpose.
 */
public final class VirtioMmioDriver {
    private final String name;
    private final RegisterBus bus;
    private long negotiated;

    /** A driver for the device {@code name} behind {@code bus}. */
    public VirtioMmioDriver(String name, RegisterBus bus) {
        this.name = name;
        this.bus = bus;
    }

    public String name() {
        return name;
    }

    public RegisterBus bus() {
        return bus;
    }

    /** The features this driver accepted (after {@link #initialize}). */
    public long negotiatedFeatures() {
        return negotiated;
    }

    /**
     * Check the magic, version and device ID; reset; negotiate {@code wanted} (intersected with the device's offer,
     * plus VERSION_1); set up {@code queues} as queues 0, 1, ...; set DRIVER_OK. Completes with the accepted
     * features, or fails with a {@link ScriptedGuestException} saying which step the device refused.
     */
    public CompletionStage<Long> initialize(int deviceId, long wanted, List<SplitQueueDriver> queues) {
        return read32(MAGIC_VALUE).thenCompose(magic -> {
            if (magic != MAGIC) {
                throw refused("no virtio-mmio device: magic 0x" + Long.toHexString(magic));
            }
            return read32(VERSION);
        }).thenCompose(version -> {
            if (version != 2) {
                throw refused("virtio-mmio version " + version + " (only 2 is supported)");
            }
            return read32(DEVICE_ID);
        }).thenCompose(id -> {
            if (id != deviceId) {
                throw refused("device ID " + id + ", expected " + deviceId);
            }
            return setStatus(0);
        }).thenCompose(v -> setStatus(S_ACKNOWLEDGE))
                .thenCompose(v -> setStatus(S_ACKNOWLEDGE | S_DRIVER))
                .thenCompose(v -> deviceFeatures())
                .thenCompose(offered -> {
                    if ((offered & F_VERSION_1) == 0) {
                        throw refused("the device does not offer VIRTIO_F_VERSION_1");
                    }
                    negotiated = (wanted & offered) | F_VERSION_1;
                    return writeDriverFeatures(negotiated);
                })
                .thenCompose(v -> setStatus(S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK))
                .thenCompose(v -> status())
                .thenCompose(status -> {
                    if ((status & S_FEATURES_OK) == 0) {
                        throw refused("the device refused features 0x" + Long.toHexString(negotiated));
                    }
                    CompletionStage<Void> setup = CompletableFuture.completedFuture(null);
                    for (int i = 0; i < queues.size(); i++) {
                        int index = i;
                        setup = setup.thenCompose(v -> setUpQueue(index, queues.get(index)));
                    }
                    return setup;
                })
                .thenCompose(v -> setStatus(S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK))
                .thenApply(v -> negotiated);
    }

    /** Both words of DeviceFeatures. */
    public CompletionStage<Long> deviceFeatures() {
        return write32(DEVICE_FEATURES_SEL, 0).thenCompose(v -> read32(DEVICE_FEATURES))
                .thenCompose(low -> write32(DEVICE_FEATURES_SEL, 1).thenCompose(v -> read32(DEVICE_FEATURES))
                        .thenApply(high -> low | (high << 32)));
    }

    /** Write both words of DriverFeatures. */
    public CompletionStage<Void> writeDriverFeatures(long features) {
        return write32(DRIVER_FEATURES_SEL, 0).thenCompose(v -> write32(DRIVER_FEATURES, features & 0xffffffffL))
                .thenCompose(v -> write32(DRIVER_FEATURES_SEL, 1))
                .thenCompose(v -> write32(DRIVER_FEATURES, features >>> 32));
    }

    /** Select queue {@code index}, check its maximum, give it {@code queue}'s size and rings, and mark it ready. */
    public CompletionStage<Void> setUpQueue(int index, SplitQueueDriver queue) {
        return write32(QUEUE_SEL, index).thenCompose(v -> read32(QUEUE_NUM_MAX)).thenCompose(max -> {
            if (max == 0) {
                throw refused("queue " + index + " does not exist");
            }
            if (queue.size() > max) {
                throw refused("queue " + index + " holds at most " + max + " entries, the driver's has "
                        + queue.size());
            }
            return write32(QUEUE_NUM, queue.size());
        }).thenCompose(v -> write64(QUEUE_DESC_LOW, queue.descriptorTable()))
                .thenCompose(v -> write64(QUEUE_DRIVER_LOW, queue.availableRing()))
                .thenCompose(v -> write64(QUEUE_DEVICE_LOW, queue.usedRing()))
                .thenCompose(v -> write32(QUEUE_READY, 1))
                .thenCompose(v -> read32(QUEUE_READY))
                .thenApply(ready -> {
                    if (ready != 1) {
                        throw refused("queue " + index + " did not become ready");
                    }
                    return null;
                });
    }

    /** Tell the device queue {@code index} has new buffers; completes when the device answered the write. */
    public CompletionStage<Void> notify(int index) {
        return write32(QUEUE_NOTIFY, index);
    }

    public CompletionStage<Long> status() {
        return read32(STATUS);
    }

    public CompletionStage<Void> setStatus(int status) {
        return write32(STATUS, status);
    }

    /** Reset the device (status 0). */
    public CompletionStage<Void> reset() {
        return setStatus(0);
    }

    /** Read InterruptStatus and acknowledge every bit set; completes with the bits. */
    public CompletionStage<Long> takeInterrupts() {
        return read32(INTERRUPT_STATUS).thenCompose(bits -> bits == 0 ? CompletableFuture.completedFuture(0L)
                : write32(INTERRUPT_ACK, bits).thenApply(v -> bits));
    }

    public CompletionStage<Long> readConfig(int offset, int size) {
        return bus.read(CONFIG + offset, size);
    }

    public CompletionStage<Void> writeConfig(int offset, int size, long value) {
        return bus.write(CONFIG + offset, size, value);
    }

    public CompletionStage<Long> read32(int offset) {
        return bus.read(offset, 4).thenApply(v -> v & 0xffffffffL);
    }

    public CompletionStage<Void> write32(int offset, long value) {
        return bus.write(offset, 4, value & 0xffffffffL);
    }

    private CompletionStage<Void> write64(int lowOffset, long value) {
        return write32(lowOffset, value & 0xffffffffL).thenCompose(v -> write32(lowOffset + 4, value >>> 32));
    }

    private ScriptedGuestException refused(String what) {
        return new ScriptedGuestException(name + ": " + what);
    }
}
