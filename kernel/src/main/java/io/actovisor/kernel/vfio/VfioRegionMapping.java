package io.actovisor.kernel.vfio;

import io.actovisor.memory.sys.NativeBuffer;
import io.actovisor.memory.sys.NativeException;
import io.actovisor.memory.sys.Posix;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The owner of one mmap of a device region (a BAR): loads and stores go straight to the device. {@link #close()}
 * unmaps, idempotently; accesses through {@link #buffer()} after that fail.
 */
public final class VfioRegionMapping implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(VfioRegionMapping.class);

    private final Posix posix;
    private final int region;
    private final long address;
    private final long length;
    private final NativeBuffer view;
    private boolean closed;

    VfioRegionMapping(Posix posix, int region, long address, long length) {
        this.posix = posix;
        this.region = region;
        this.address = address;
        this.length = length;
        this.view = NativeBuffer.view(address, length);
    }

    public int region() {
        return region;
    }

    public long address() {
        return address;
    }

    public long length() {
        return length;
    }

    /** A bounds-checked view of the mapping. */
    public NativeBuffer buffer() {
        if (closed) {
            throw new IllegalStateException("the mapping of region " + region + " is closed");
        }
        return view;
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        try {
            posix.munmap(address, length);
        } catch (NativeException e) {
            LOG.warn("unmapping region {} at 0x{} failed: {}", region, Long.toHexString(address), e.getMessage());
        }
    }
}
