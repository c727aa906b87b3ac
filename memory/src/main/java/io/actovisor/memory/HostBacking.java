package io.actovisor.memory;

import java.util.Objects;

/**
 * Where a RAM or ROM region's bytes live: an offset into a {@link HostMemory} mapping. Two backings are equal when
 * they name the same mapping (by identity) and offset.
 */
public record HostBacking(HostMemory memory, long offset) {
    public HostBacking {
        Objects.requireNonNull(memory, "memory");
        if (offset < 0 || offset >= memory.size()) {
            throw new IllegalArgumentException("backing offset 0x" + Long.toHexString(offset)
                    + " is outside host memory " + memory.name() + " of size 0x" + Long.toHexString(memory.size()));
        }
    }

    /** The host address of byte {@code delta} of the backing. */
    public HostAddress hostAddress(long delta) {
        return memory.base().checkedAdd(offset).checkedAdd(delta);
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof HostBacking b && b.memory == memory && b.offset == offset;
    }

    @Override
    public int hashCode() {
        return System.identityHashCode(memory) * 31 + Long.hashCode(offset);
    }

    @Override
    public String toString() {
        return memory.name() + "+0x" + Long.toHexString(offset);
    }
}
