package io.actovisor.memory;

import java.util.Objects;

/**
 * Bytes [offset, offset + length) of one {@link HostMemory} block: how a guest range is addressed once its section
 * is found. Host-address arithmetic stays in this module.
 */
public record HostSpan(HostMemory memory, long offset, long length) {
    public HostSpan {
        Objects.requireNonNull(memory, "memory");
        if (offset < 0 || length <= 0 || offset > memory.size() - length) {
            throw new IllegalArgumentException("span of 0x" + Long.toHexString(length) + " bytes at offset 0x"
                    + Long.toHexString(offset) + " is outside host memory " + memory.name() + " of size 0x"
                    + Long.toHexString(memory.size()));
        }
    }

    /** Give the span's pages back to the host ({@link HostMemory#discard(long, long)}). */
    public void discard() {
        memory.discard(offset, length);
    }

    /** Fault the span's pages in now ({@link HostMemory#populate(long, long)}). */
    public void populate() {
        memory.populate(offset, length);
    }

    /** The host addresses of the span (for logs and tests). */
    public AddressRange hostRange() {
        return AddressRange.of(memory.base().value() + offset, length);
    }

    @Override
    public String toString() {
        return memory.name() + "+0x" + Long.toHexString(offset) + "[0x" + Long.toHexString(length) + "]";
    }
}
