package io.actovisor.devices.iommu.pinned;

import io.actovisor.devices.iommu.DmaFault;
import io.actovisor.devices.iommu.DmaMapping;
import io.actovisor.devices.iommu.DmaPermissions;
import io.actovisor.devices.iommu.DmaPort;
import io.actovisor.devices.iommu.Iommu;
import io.actovisor.devices.iommu.IommuException;
import io.actovisor.devices.iommu.IommuInfo;
import io.actovisor.devices.iommu.Type1MappingTable;
import io.actovisor.devices.uring.IoUring;
import io.actovisor.devices.uring.IoUringAbi;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.HostAddress;
import io.actovisor.memory.sys.Errno;
import io.actovisor.memory.sys.Mman;
import io.actovisor.memory.sys.NativeBuffer;
import io.actovisor.memory.sys.NativeException;
import io.actovisor.memory.sys.Posix;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * The {@code pinned} IOMMU backend: real long-term pins through io_uring fixed buffers, and device DMA through
 * them. {@link #map} registers the host range as fixed buffers (the kernel pins the pages with
 * {@code FOLL_PIN | FOLL_LONGTERM}, as VFIO's type1 driver does for {@code MAP_DMA}); {@link #unmap} empties those
 * slots (unpins). The type1 rules are checked by a {@link Type1MappingTable} before the kernel is touched.
 *
 * <p>Limits: the kernel registers at most 1 GiB per buffer and {@value IoUringAbi#MAX_REGISTERED_BUFFERS} buffers
 * per ring. A mapping takes one slot per GiB; the mapping limit reported in {@link #info()} is at most the slot
 * count, and a map that needs more free slots than remain is refused with {@code LIMIT}. Pinning counts against
 * {@code RLIMIT_MEMLOCK} unless the process has {@code CAP_IPC_LOCK}; ENOMEM becomes {@code PIN_FAILED} naming it.
 *
 * <p>{@link #dmaPort()} is the device: a read is {@code IORING_OP_WRITE_FIXED} from the pinned pages into a scratch
 * memfd, a write is {@code IORING_OP_READ_FIXED} from the memfd into them. The device therefore sees the pinned
 * physical pages, never what the CPU's page tables map at that address now. Single owner, not thread-safe.
 */
public final class PinnedIommu implements Iommu {
    /** The backend name in configuration. */
    public static final String BACKEND = "pinned";

    private static final long PAGE_SIZES = (1L << 12) | (1L << 21) | (1L << 30);
    private static final AddressRange IOVA_SPACE = AddressRange.of(0, 1L << 48);
    private static final int DMA_CHUNK = 1 << 20;

    private final Posix posix;
    private final IoUring ring;
    private final Type1MappingTable table;
    private final BitSet usedSlots = new BitSet();
    /** Slots of each mapping, by IOVA base. */
    private final Map<Long, int[]> slotsByIova = new HashMap<>();
    private final int scratchFd;
    private final PinnedDmaPort port = new PinnedDmaPort();
    private long pinnedBytes;
    private boolean closed;

    private PinnedIommu(Posix posix, IoUring ring, int maxMappings, int scratchFd) {
        this.posix = posix;
        this.ring = ring;
        this.scratchFd = scratchFd;
        this.table = new Type1MappingTable(new IommuInfo(PAGE_SIZES, maxMappings, List.of(IOVA_SPACE)));
    }

    /** A context with type1's default mapping limit (capped at the ring's slots) on this host. */
    public static PinnedIommu open() {
        return open(IoUringAbi.MAX_REGISTERED_BUFFERS);
    }

    /** A context accepting at most {@code maxMappings} mappings (at most 16384: one ring's fixed-buffer slots). */
    public static PinnedIommu open(int maxMappings) {
        return open(Posix.system(), maxMappings);
    }

    public static PinnedIommu open(Posix posix, int maxMappings) {
        if (maxMappings < 1) {
            throw new IllegalArgumentException("max-mappings must be at least 1, was " + maxMappings);
        }
        int limit = Math.min(maxMappings, IoUringAbi.MAX_REGISTERED_BUFFERS);
        IoUring ring = IoUring.open(posix, 4);
        try {
            ring.registerSparseBuffers(IoUringAbi.MAX_REGISTERED_BUFFERS);
            int scratch = posix.memfdCreate("actovisor-dma-scratch", Mman.MFD_CLOEXEC);
            return new PinnedIommu(posix, ring, limit, scratch);
        } catch (RuntimeException e) {
            ring.close();
            throw e;
        }
    }

    @Override
    public String backend() {
        return BACKEND;
    }

    @Override
    public IommuInfo info() {
        return table.info();
    }

    @Override
    public void map(AddressRange iova, HostAddress host, DmaPermissions permissions) {
        ensureOpen(iova);
        table.checkMap(iova, host);
        int pieces = (int) ((iova.size() + IoUringAbi.MAX_BUFFER_BYTES - 1) / IoUringAbi.MAX_BUFFER_BYTES);
        if (IoUringAbi.MAX_REGISTERED_BUFFERS - usedSlots.cardinality() < pieces) {
            throw new IommuException(IommuException.Kind.LIMIT, iova, "cannot map IOVA " + iova + ": it needs "
                    + pieces + " fixed-buffer slots and only " + (IoUringAbi.MAX_REGISTERED_BUFFERS
                    - usedSlots.cardinality()) + " of " + IoUringAbi.MAX_REGISTERED_BUFFERS + " are free");
        }
        int[] slots = new int[pieces];
        int done = 0;
        try {
            for (int i = 0; i < pieces; i++) {
                long offset = i * IoUringAbi.MAX_BUFFER_BYTES;
                long length = Math.min(IoUringAbi.MAX_BUFFER_BYTES, iova.size() - offset);
                int slot = usedSlots.nextClearBit(0);
                ring.setBuffer(slot, host.value() + offset, length);
                usedSlots.set(slot);
                slots[i] = slot;
                done++;
            }
        } catch (NativeException e) {
            for (int i = 0; i < done; i++) {
                ring.clearBuffer(slots[i]);
                usedSlots.clear(slots[i]);
            }
            String why = e.errno() == Errno.ENOMEM ? " (the locked-memory limit RLIMIT_MEMLOCK, `ulimit -l`, is too "
                    + "small for " + iova.size() + " bytes; raise it or grant CAP_IPC_LOCK)" : "";
            throw new IommuException(IommuException.Kind.PIN_FAILED, iova, "cannot pin host " + host + " for IOVA "
                    + iova + ": " + e.getMessage() + why, e);
        }
        table.add(iova, host, permissions);
        slotsByIova.put(iova.base(), slots);
        pinnedBytes += iova.size();
    }

    @Override
    public List<DmaMapping> unmap(AddressRange iova) {
        ensureOpen(iova);
        List<DmaMapping> removed = table.checkUnmap(iova);
        for (DmaMapping m : removed) {
            for (int slot : slotsByIova.remove(m.iova().base())) {
                ring.clearBuffer(slot);
                usedSlots.clear(slot);
            }
            pinnedBytes -= m.iova().size();
        }
        table.remove(iova);
        return removed;
    }

    @Override
    public List<DmaMapping> mappings() {
        return table.mappings();
    }

    @Override
    public long pinnedBytes() {
        return pinnedBytes;
    }

    @Override
    public Optional<DmaPort> dmaPort() {
        return Optional.of(port);
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        try {
            ring.unregisterBuffers();
        } finally {
            ring.close();
            posix.close(scratchFd);
            table.clear();
            slotsByIova.clear();
            usedSlots.clear();
            pinnedBytes = 0;
        }
    }

    private void ensureOpen(AddressRange iova) {
        if (closed) {
            throw new IommuException(IommuException.Kind.CLOSED, iova, "the pinned IOMMU is closed");
        }
    }

    /** Where an IOVA lands: its mapping, the fixed-buffer slot and the host address inside that buffer. */
    private record Target(DmaMapping mapping, int slot, long hostAddress, int length) {
    }

    /** The longest piece at {@code iova} (at most {@code wanted} bytes) that stays inside one fixed buffer. */
    private Target resolve(long iova, int wanted, boolean write) {
        DmaMapping m = table.find(iova);
        if (m == null) {
            throw new DmaFault(iova, "device access to IOVA 0x" + Long.toHexString(iova) + " faulted: no mapping "
                    + "covers it");
        }
        if (write && !m.permissions().canWrite()) {
            throw new DmaFault(iova, "device write to IOVA 0x" + Long.toHexString(iova) + " faulted: the mapping "
                    + m.iova() + " is read-only");
        }
        long offset = iova - m.iova().base();
        int piece = (int) (offset / IoUringAbi.MAX_BUFFER_BYTES);
        long inPiece = offset % IoUringAbi.MAX_BUFFER_BYTES;
        long pieceEnd = Math.min(IoUringAbi.MAX_BUFFER_BYTES, m.iova().size() - (long) piece
                * IoUringAbi.MAX_BUFFER_BYTES);
        int length = (int) Math.min(Math.min(wanted, pieceEnd - inPiece), DMA_CHUNK);
        return new Target(m, slotsByIova.get(m.iova().base())[piece], m.host().value() + offset, length);
    }

    /** Device DMA through the pinned pages. */
    private final class PinnedDmaPort implements DmaPort {
        @Override
        public byte[] read(long iova, int length) {
            ensureOpen(null);
            byte[] out = new byte[length];
            int done = 0;
            while (done < length) {
                Target t = resolve(iova + done, length - done, false);
                int n = ring.writeFixed(scratchFd, 0, t.slot(), t.hostAddress(), t.length());
                try (NativeBuffer buffer = NativeBuffer.allocate(n)) {
                    long got = posix.pread(scratchFd, buffer.address(), n, 0);
                    buffer.getBytes(0, out, done, (int) got);
                }
                done += n;
            }
            return out;
        }

        @Override
        public void write(long iova, byte[] data) {
            ensureOpen(null);
            int done = 0;
            while (done < data.length) {
                Target t = resolve(iova + done, data.length - done, true);
                try (NativeBuffer buffer = NativeBuffer.allocate(t.length())) {
                    buffer.putBytes(0, data, done, t.length());
                    posix.pwrite(scratchFd, buffer.address(), t.length(), 0);
                }
                int n = ring.readFixed(scratchFd, 0, t.slot(), t.hostAddress(), t.length());
                done += n;
            }
        }
    }
}
