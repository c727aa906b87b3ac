package io.actovisor.devices.guest.scripted;

import io.actovisor.devices.virtio.Virtqueue;
import io.actovisor.memory.GuestAddress;
import io.actovisor.memory.GuestMemory;
import io.actovisor.memory.GuestMemoryView;
import java.lang.invoke.VarHandle;
import java.util.ArrayDeque;
import java.util.Deque;
import java.util.List;
import java.util.Optional;

/**
 * The driver's side of a virtio 1.x split virtqueue, in real guest RAM: it writes descriptors and the available
 * ring, and reads the used ring the device writes, at the addresses the driver later gives the device through the
 * transport. One page holds the whole queue (descriptor table, then the available ring, then the used ring, 4-byte
 * aligned), so the size is at most 128. The raw operations ({@link #writeDescriptor}, {@link #publish}) let a
 * misbehaving script build chains no well-behaved driver would.
 */
public final class SplitQueueDriver {
    /** The largest queue that fits one page with its rings. */
    public static final int MAX_SIZE = 128;

    /** One buffer of a chain the driver offers. */
    public record Buffer(long address, int length, boolean deviceWrites) {
    }

    /** A chain the device handed back: its head and how many bytes it wrote. */
    public record Used(int head, int written) {
    }

    private final GuestMemoryView memory;
    private final int size;
    private final long descriptors;
    private final long available;
    private final long used;
    private final Deque<Integer> free = new ArrayDeque<>();
    private final int[] chainLength;
    private int nextAvailable;
    private int lastUsed;

    /** A queue of {@code size} entries (a power of two up to {@link #MAX_SIZE}) in the page at {@code page}. */
    public SplitQueueDriver(GuestMemory memory, long page, int size) {
        this(GuestMemoryView.of(memory), page, size);
    }

    /** As {@link #SplitQueueDriver(GuestMemory, long, int)}, in guest memory as it is at each access. */
    public SplitQueueDriver(GuestMemoryView memory, long page, int size) {
        if (size <= 0 || size > MAX_SIZE || (size & (size - 1)) != 0) {
            throw new IllegalArgumentException("queue size " + size + " must be a power of two up to " + MAX_SIZE);
        }
        if (page % GuestLayout.PAGE != 0 || !memory.current().isMemory(new GuestAddress(page), GuestLayout.PAGE)) {
            throw new IllegalArgumentException("queue page 0x" + Long.toHexString(page)
                    + " is not an aligned page of guest RAM");
        }
        this.memory = memory;
        this.size = size;
        this.descriptors = page;
        this.available = page + 16L * size;
        this.used = (available + 6 + 2L * size + 3) & ~3L;
        this.chainLength = new int[size];
        for (int i = 0; i < size; i++) {
            free.add(i);
        }
        byte[] zero = new byte[(int) GuestLayout.PAGE];
        memory.current().write(new GuestAddress(page), zero);
    }

    public int size() {
        return size;
    }

    /** Guest-physical address of the descriptor table (QueueDesc). */
    public long descriptorTable() {
        return descriptors;
    }

    /** Guest-physical address of the available ring (QueueDriver). */
    public long availableRing() {
        return available;
    }

    /** Guest-physical address of the used ring (QueueDevice). */
    public long usedRing() {
        return used;
    }

    /** Free descriptors. */
    public int freeDescriptors() {
        return free.size();
    }

    /**
     * Offer {@code buffers} as one chain: write its descriptors, put its head in the available ring and advance the
     * available index (last, after a release fence, as a driver must). Returns the head.
     */
    public int add(List<Buffer> buffers) {
        if (buffers.isEmpty() || buffers.size() > free.size()) {
            throw new ScriptedGuestException("cannot offer a chain of " + buffers.size() + " buffers: "
                    + free.size() + " of " + size + " descriptors are free");
        }
        int[] ids = new int[buffers.size()];
        for (int i = 0; i < ids.length; i++) {
            ids[i] = free.poll();
        }
        for (int i = 0; i < ids.length; i++) {
            Buffer b = buffers.get(i);
            boolean more = i + 1 < ids.length;
            writeDescriptor(ids[i], b.address(), b.length(),
                    (more ? Virtqueue.F_NEXT : 0) | (b.deviceWrites() ? Virtqueue.F_WRITE : 0), more ? ids[i + 1] : 0);
        }
        chainLength[ids[0]] = ids.length;
        publish(ids[0]);
        return ids[0];
    }

    /** Write descriptor {@code index} as given, whatever it says (misbehaving scripts use this directly). */
    public void writeDescriptor(int index, long address, int length, int flags, int next) {
        long d = descriptors + 16L * Math.floorMod(index, size);
        memory.current().writeLong(new GuestAddress(d), address);
        memory.current().writeInt(new GuestAddress(d + 8), length);
        memory.current().writeShort(new GuestAddress(d + 12), (short) flags);
        memory.current().writeShort(new GuestAddress(d + 14), (short) next);
    }

    /** Put {@code head} in the next slot of the available ring and advance the available index. */
    public void publish(int head) {
        memory.current().writeShort(new GuestAddress(available + 4 + 2L * (nextAvailable % size)), (short) head);
        nextAvailable = (nextAvailable + 1) & 0xffff;
        VarHandle.releaseFence();
        memory.current().writeShort(new GuestAddress(available + 2), (short) nextAvailable);
    }

    /** Set the available index to {@code index} without offering anything (a misbehaving driver's jump). */
    public void setAvailableIndex(int index) {
        nextAvailable = index & 0xffff;
        memory.current().writeShort(new GuestAddress(available + 2), (short) nextAvailable);
    }

    /** The next chain the device handed back, if any; its descriptors become free again. */
    public Optional<Used> pollUsed() {
        int usedIndex = memory.current().readShort(new GuestAddress(used + 2)) & 0xffff;
        if (usedIndex == lastUsed) {
            return Optional.empty();
        }
        VarHandle.acquireFence();
        long entry = used + 4 + 8L * (lastUsed % size);
        int head = memory.current().readInt(new GuestAddress(entry));
        int written = memory.current().readInt(new GuestAddress(entry + 4));
        lastUsed = (lastUsed + 1) & 0xffff;
        if (head >= 0 && head < size && chainLength[head] > 0) {
            releaseChain(head);
        }
        return Optional.of(new Used(head, written));
    }

    /** Chains handed back since the last poll, without consuming them. */
    public int usedPending() {
        return ((memory.current().readShort(new GuestAddress(used + 2)) & 0xffff) - lastUsed) & 0xffff;
    }

    private void releaseChain(int head) {
        int id = head;
        for (int i = chainLength[head]; i > 0; i--) {
            free.add(id);
            long d = descriptors + 16L * id;
            id = memory.current().readShort(new GuestAddress(d + 14)) & 0xffff;
        }
        chainLength[head] = 0;
    }
}
