package io.actovisor.devices.iommu.pinned;

import io.actovisor.devices.iommu.DmaFault;
import io.actovisor.devices.iommu.DmaMapping;
import io.actovisor.devices.iommu.DmaPermissions;
import io.actovisor.devices.iommu.DmaPort;
import io.actovisor.devices.iommu.Iommu;
import io.actovisor.devices.iommu.IommuException;
import io.actovisor.devices.iommu.IommuInfo;
import io.actovisor.devices.iommu.Type1MappingTable;
import io.actovisor.kernel.uring.IoUring;
import io.actovisor.kernel.uring.IoUringAbi;
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
 *
 * <p>An unmap has released its pins by the time it returns ({@code VmPin} has dropped), as coordinated discard
 * needs. How depends on the kernel, found by {@link PinRelease#probeOnce() probing} it: {@link PinRelease#SLOT_UPDATE}
 * (one ring, an unmap empties its slots) or {@link PinRelease#RING_PER_MAPPING} (one ring per mapping piece, an
 * unmap unregisters its table, which waits for the kernel's puts, and closes it; one fd per piece).
 */
public final class PinnedIommu implements Iommu {
    /** The backend name in configuration. */
    public static final String BACKEND = "pinned";

    private static final long PAGE_SIZES = (1L << 12) | (1L << 21) | (1L << 30);
    private static final AddressRange IOVA_SPACE = AddressRange.of(0, 1L << 48);
    private static final int DMA_CHUNK = 1 << 20;

    private final Posix posix;
    private final PinRelease release;
    /** The shared ring of {@link PinRelease#SLOT_UPDATE}; null with a ring per mapping. */
    private final IoUring ring;
    private final Type1MappingTable table;
    private final BitSet usedSlots = new BitSet();
    /** Where each mapping's pieces are pinned, by IOVA base. */
    private final Map<Long, Pin[]> pinsByIova = new HashMap<>();
    private final int scratchFd;
    private final PinnedDmaPort port = new PinnedDmaPort();
    private long pinnedBytes;
    private boolean closed;

    /** One pinned piece of a mapping: fixed buffer {@code slot} of {@code ring}. */
    private record Pin(IoUring ring, int slot) {
    }

    private PinnedIommu(Posix posix, PinRelease release, IoUring ring, int maxMappings, int scratchFd) {
        this.posix = posix;
        this.release = release;
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

    /** A context on {@code posix} releasing pins the way this kernel confirms synchronously ({@link PinRelease}). */
    public static PinnedIommu open(Posix posix, int maxMappings) {
        return open(posix, maxMappings, PinRelease.ofThisKernel());
    }

    /** A context that releases pins by {@code release} (tests run both modes on any kernel). */
    public static PinnedIommu open(Posix posix, int maxMappings, PinRelease release) {
        if (maxMappings < 1) {
            throw new IllegalArgumentException("max-mappings must be at least 1, was " + maxMappings);
        }
        int limit = Math.min(maxMappings, IoUringAbi.MAX_REGISTERED_BUFFERS);
        IoUring ring = release == PinRelease.SLOT_UPDATE ? IoUring.open(posix, 4) : null;
        int scratch = -1;
        try {
            if (ring != null) {
                ring.registerSparseBuffers(IoUringAbi.MAX_REGISTERED_BUFFERS);
            }
            scratch = posix.memfdCreate("actovisor-dma-scratch", Mman.MFD_CLOEXEC);
            return new PinnedIommu(posix, release, ring, limit, scratch);
        } catch (RuntimeException e) {
            if (ring != null) {
                ring.close();
            }
            throw e;
        }
    }

    /** How this context releases the pins of an unmapped mapping. */
    public PinRelease release() {
        return release;
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
        Pin[] pins = new Pin[pieces];
        int done = 0;
        try {
            for (int i = 0; i < pieces; i++) {
                long offset = i * IoUringAbi.MAX_BUFFER_BYTES;
                long length = Math.min(IoUringAbi.MAX_BUFFER_BYTES, iova.size() - offset);
                int slot = usedSlots.nextClearBit(0);
                pins[i] = pin(slot, host.value() + offset, length);
                usedSlots.set(slot);
                done++;
            }
        } catch (NativeException e) {
            for (int i = 0; i < done; i++) {
                unpin(pins[i]);
            }
            String why = e.errno() == Errno.ENOMEM ? " (the locked-memory limit RLIMIT_MEMLOCK, `ulimit -l`, is too "
                    + "small for " + iova.size() + " bytes; raise it or grant CAP_IPC_LOCK)" : "";
            throw new IommuException(IommuException.Kind.PIN_FAILED, iova, "cannot pin host " + host + " for IOVA "
                    + iova + ": " + e.getMessage() + why, e);
        }
        table.add(iova, host, permissions);
        pinsByIova.put(iova.base(), pins);
        pinnedBytes += iova.size();
    }

    @Override
    public List<DmaMapping> unmap(AddressRange iova) {
        ensureOpen(iova);
        List<DmaMapping> removed = table.checkUnmap(iova);
        for (DmaMapping m : removed) {
            for (Pin pin : pinsByIova.remove(m.iova().base())) {
                unpin(pin);
            }
            pinnedBytes -= m.iova().size();
        }
        table.remove(iova);
        return removed;
    }

    /** Pin {@code length} bytes at {@code address}: slot {@code slot} of the shared ring, or a ring of its own. */
    private Pin pin(int slot, long address, long length) {
        if (ring != null) {
            ring.setBuffer(slot, address, length);
            return new Pin(ring, slot);
        }
        IoUring own = IoUring.open(posix, 4);
        try {
            own.registerSparseBuffers(1);
            own.setBuffer(0, address, length);
            return new Pin(own, slot);
        } catch (RuntimeException e) {
            own.close();
            throw e;
        }
    }

    /** Release one piece's pins; they are gone from the kernel's accounting when this returns. */
    private void unpin(Pin pin) {
        if (pin.ring() == ring) {
            ring.clearBuffer(pin.slot());
            usedSlots.clear(pin.slot());
            return;
        }
        try {
            PinRelease.unregister(pin.ring());
        } finally {
            pin.ring().close();
            usedSlots.clear(pin.slot());
        }
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
        RuntimeException first = null;
        for (Pin[] pins : pinsByIova.values()) {
            for (Pin pin : pins) {
                if (pin.ring() != ring) {
                    try {
                        unpin(pin); // closes the pin's ring even when the unregister fails
                    } catch (RuntimeException e) {
                        first = first == null ? e : first;
                    }
                }
            }
        }
        try {
            if (ring != null) {
                ring.unregisterBuffers();
            }
            if (first != null) {
                throw first;
            }
        } finally {
            if (ring != null) {
                ring.close();
            }
            posix.close(scratchFd);
            table.clear();
            pinsByIova.clear();
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
    private record Target(DmaMapping mapping, IoUring ring, int slot, long hostAddress, int length) {
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
        Pin pin = pinsByIova.get(m.iova().base())[piece];
        return new Target(m, pin.ring(), pin.ring() == ring ? pin.slot() : 0, m.host().value() + offset, length);
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
                int n = t.ring().writeFixed(scratchFd, 0, t.slot(), t.hostAddress(), t.length());
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
                int n = t.ring().readFixed(scratchFd, 0, t.slot(), t.hostAddress(), t.length());
                done += n;
            }
        }
    }
}
