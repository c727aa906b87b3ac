package io.actovisor.kernel.vfio;

import io.actovisor.memory.sys.NativeBuffer;
import io.actovisor.memory.sys.NativeException;
import io.actovisor.memory.sys.Posix;
import java.util.List;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The owner of the eventfds one interrupt index of a device signals ({@code VFIO_DEVICE_SET_IRQS} with
 * DATA_EVENTFD | ACTION_TRIGGER). {@link #await(int)} blocks until a vector fires: call it on a blocking
 * dispatcher, never on an actor's default one. {@link #close()} disables the index and closes the eventfds,
 * idempotently.
 */
public final class VfioInterrupts implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(VfioInterrupts.class);

    private final Posix posix;
    private final VfioDevice device;
    private final int index;
    private final List<Integer> eventfds;
    private boolean closed;

    VfioInterrupts(Posix posix, VfioDevice device, int index, List<Integer> eventfds) {
        this.posix = posix;
        this.device = device;
        this.index = index;
        this.eventfds = List.copyOf(eventfds);
    }

    public int index() {
        return index;
    }

    /** The eventfd of each vector, in vector order. */
    public List<Integer> eventfds() {
        return eventfds;
    }

    /** Block until {@code vector} fires; returns how many times it fired since the last call (the eventfd count). */
    public long await(int vector) {
        if (closed) {
            throw new IllegalStateException("interrupts of index " + index + " of " + device.name() + " are closed");
        }
        if (vector < 0 || vector >= eventfds.size()) {
            throw new IllegalArgumentException("vector " + vector + " of IRQ index " + index + " does not exist; "
                    + eventfds.size() + " are enabled");
        }
        try (NativeBuffer counter = NativeBuffer.allocate(Long.BYTES)) {
            long read = posix.read(eventfds.get(vector), counter.address(), Long.BYTES);
            if (read != Long.BYTES) {
                throw new VfioException(VfioException.Reason.NATIVE, "read " + read + " of 8 bytes from the eventfd"
                        + " of vector " + vector + " of " + device.name());
            }
            return counter.getLong(0);
        } catch (NativeException e) {
            throw new VfioException(VfioException.Reason.NATIVE, "waiting for vector " + vector + " of IRQ index "
                    + index + " of " + device.name() + ": " + e.getMessage(), e);
        }
    }

    /** Disable the index (DATA_NONE | ACTION_TRIGGER, count 0), then close the eventfds. Idempotent. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        try {
            device.disableInterrupts(index);
        } catch (RuntimeException e) {
            LOG.warn("disabling IRQ index {} of {} failed: {}", index, device.name(), e.getMessage());
        }
        device.forget(this);
        for (int fd : eventfds) {
            try {
                posix.close(fd);
            } catch (NativeException e) {
                LOG.warn("closing eventfd {} of {} failed: {}", fd, device.name(), e.getMessage());
            }
        }
    }
}
