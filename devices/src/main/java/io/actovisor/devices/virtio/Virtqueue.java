package io.actovisor.devices.virtio;

import io.actovisor.memory.GuestAddress;
import io.actovisor.memory.GuestMemory;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * A virtio 1.x split virtqueue in guest memory: the descriptor table (16 bytes each: address, length, flags, next),
 * the driver's available ring (flags, idx, ring[size]) and the device's used ring (flags, idx, ring[size] of id and
 * length). Everything the guest wrote is checked before use; a violation is a {@link VirtioException}, after which
 * the device must be reset.
 */
public final class Virtqueue {
    /** Descriptor flag: the chain continues at {@code next}. */
    public static final int F_NEXT = 1;
    /** Descriptor flag: the device writes this buffer (otherwise it reads it). */
    public static final int F_WRITE = 2;
    /** Descriptor flag: the buffer holds a table of descriptors (not offered by actovisor's devices). */
    public static final int F_INDIRECT = 4;

    /** One buffer of a chain. */
    public record Descriptor(long address, int length, boolean deviceWrites) {
    }

    /** A chain the driver made available: its head index and its buffers in order. */
    public record Chain(int head, List<Descriptor> descriptors) {
        /** Bytes of the buffers the device reads. */
        public int readableBytes() {
            return descriptors.stream().filter(d -> !d.deviceWrites()).mapToInt(Descriptor::length).sum();
        }
    }

    private final int index;
    private final int size;
    private final long descriptors;
    private final long available;
    private final long used;
    private int lastAvailable;
    private int nextUsed;

    /** A queue of {@code size} entries (a power of two) at the given guest-physical addresses. */
    public Virtqueue(int index, int size, long descriptors, long available, long used) {
        if (size <= 0 || size > 32768 || (size & (size - 1)) != 0) {
            throw new VirtioException("queue " + index + ": size " + size + " is not a power of two up to 32768");
        }
        if (descriptors % 16 != 0 || available % 2 != 0 || used % 4 != 0) {
            throw new VirtioException("queue " + index + ": misaligned rings (descriptors 0x"
                    + Long.toHexString(descriptors) + ", available 0x" + Long.toHexString(available) + ", used 0x"
                    + Long.toHexString(used) + ")");
        }
        this.index = index;
        this.size = size;
        this.descriptors = descriptors;
        this.available = available;
        this.used = used;
    }

    public int size() {
        return size;
    }

    /** Check that the rings lie in guest RAM (done when the driver marks the queue ready). */
    public void checkRings(GuestMemory memory) {
        require(memory, descriptors, 16L * size, "descriptor table");
        require(memory, available, 6 + 2L * size, "available ring");
        require(memory, used, 6 + 8L * size, "used ring");
    }

    /** The next chain the driver made available, if any. */
    public Optional<Chain> pop(GuestMemory memory) {
        int availableIndex = memory.readShort(new GuestAddress(available + 2)) & 0xffff;
        int pending = (availableIndex - lastAvailable) & 0xffff;
        if (pending == 0) {
            return Optional.empty();
        }
        if (pending > size) {
            throw new VirtioException("queue " + index + ": the available index jumped by " + pending
                    + ", more than the queue size " + size);
        }
        int head = memory.readShort(new GuestAddress(available + 4 + 2L * (lastAvailable % size))) & 0xffff;
        lastAvailable = (lastAvailable + 1) & 0xffff;
        List<Descriptor> chain = new ArrayList<>();
        int next = head;
        while (true) {
            if (next >= size) {
                throw new VirtioException("queue " + index + ": descriptor index " + next + " is outside the table of "
                        + size);
            }
            if (chain.size() == size) {
                throw new VirtioException("queue " + index + ": the chain at head " + head + " is longer than the "
                        + "queue (a descriptor loop)");
            }
            long d = descriptors + 16L * next;
            long address = memory.readLong(new GuestAddress(d));
            int length = memory.readInt(new GuestAddress(d + 8));
            int flags = memory.readShort(new GuestAddress(d + 12)) & 0xffff;
            if ((flags & F_INDIRECT) != 0) {
                throw new VirtioException("queue " + index + ": indirect descriptors were not negotiated");
            }
            if (length < 0) {
                throw new VirtioException("queue " + index + ": descriptor " + next + " has an impossible length "
                        + Integer.toUnsignedString(length));
            }
            require(memory, address, length, "descriptor " + next + " buffer");
            chain.add(new Descriptor(address, length, (flags & F_WRITE) != 0));
            if ((flags & F_NEXT) == 0) {
                break;
            }
            next = memory.readShort(new GuestAddress(d + 14)) & 0xffff;
        }
        return Optional.of(new Chain(head, chain));
    }

    /** Hand chain {@code head} back to the driver with {@code written} bytes written into it. */
    public void push(GuestMemory memory, int head, int written) {
        long entry = used + 4 + 8L * (nextUsed % size);
        memory.writeInt(new GuestAddress(entry), head);
        memory.writeInt(new GuestAddress(entry + 4), written);
        nextUsed = (nextUsed + 1) & 0xffff;
        // The index goes last: the driver may read the entry as soon as it sees the new index.
        java.lang.invoke.VarHandle.releaseFence();
        memory.writeShort(new GuestAddress(used + 2), (short) nextUsed);
    }

    private void require(GuestMemory memory, long address, long length, String what) {
        if (length > 0 && (address + length < address || !memory.isMemory(new GuestAddress(address), length))) {
            throw new VirtioException("queue " + index + ": the " + what + " [0x" + Long.toHexString(address)
                    + ", +0x" + Long.toHexString(length) + ") is not in guest RAM");
        }
    }
}
