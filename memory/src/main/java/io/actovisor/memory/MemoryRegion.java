package io.actovisor.memory;

import java.util.Objects;
import java.util.Optional;

/**
 * One region of a guest address space.
 *
 * @param name     unique within its address space; sections and errors name regions by it
 * @param kind     RAM, ROM, MMIO or RESERVED
 * @param range    the guest-physical addresses it claims
 * @param priority where regions overlap, the higher priority wins (see {@link FlatView} for ties)
 * @param backing  host memory behind a RAM or ROM region; empty for MMIO and RESERVED
 * @param readOnly whether the guest may only read it (always true for ROM)
 * @param device   for MMIO (and port I/O) regions, the name of the device that answers accesses
 */
public record MemoryRegion(String name, RegionKind kind, AddressRange range, int priority,
        Optional<HostBacking> backing, boolean readOnly, Optional<String> device) {

    public MemoryRegion {
        Objects.requireNonNull(name, "name");
        Objects.requireNonNull(kind, "kind");
        Objects.requireNonNull(range, "range");
        Objects.requireNonNull(backing, "backing");
        Objects.requireNonNull(device, "device");
        if (name.isBlank()) {
            throw new IllegalArgumentException("memory region name is blank");
        }
        if (kind.isMemory() && backing.isEmpty()) {
            throw new IllegalArgumentException("region " + name + " of kind " + kind + " needs host backing");
        }
        if (!kind.isMemory() && backing.isPresent()) {
            throw new IllegalArgumentException("region " + name + " of kind " + kind + " cannot have host backing");
        }
        if (backing.isPresent()) {
            HostBacking b = backing.get();
            long room = b.memory().size() - b.offset();
            if (Long.compareUnsigned(range.size(), room) > 0) {
                throw new IllegalArgumentException("region " + name + " of size 0x" + Long.toHexString(range.size())
                        + " does not fit in host memory " + b + " (0x" + Long.toHexString(room) + " bytes left)");
            }
        }
        if (kind == RegionKind.ROM) {
            readOnly = true;
        }
    }

    /** A RAM region backed by {@code memory} from offset 0. */
    public static MemoryRegion ram(String name, GuestAddress base, HostMemory memory) {
        return ram(name, AddressRange.of(base, memory.size()), memory, 0);
    }

    /** A RAM region backed by {@code memory} from {@code offset}. */
    public static MemoryRegion ram(String name, AddressRange range, HostMemory memory, long offset) {
        return new MemoryRegion(name, RegionKind.RAM, range, 0, Optional.of(new HostBacking(memory, offset)), false,
                Optional.empty());
    }

    /** A ROM region backed by {@code memory} from {@code offset}. */
    public static MemoryRegion rom(String name, AddressRange range, HostMemory memory, long offset) {
        return new MemoryRegion(name, RegionKind.ROM, range, 0, Optional.of(new HostBacking(memory, offset)), true,
                Optional.empty());
    }

    /** An MMIO region answered by {@code device}. */
    public static MemoryRegion mmio(String name, AddressRange range, String device) {
        return new MemoryRegion(name, RegionKind.MMIO, range, 0, Optional.empty(), false, Optional.of(device));
    }

    /** A reserved hole. */
    public static MemoryRegion reserved(String name, AddressRange range) {
        return new MemoryRegion(name, RegionKind.RESERVED, range, 0, Optional.empty(), false, Optional.empty());
    }

    /** The same region with another priority. */
    public MemoryRegion withPriority(int newPriority) {
        return new MemoryRegion(name, kind, range, newPriority, backing, readOnly, device);
    }

    /** The host address of guest address {@code gpa}, which must lie in this region; only for RAM and ROM. */
    public HostAddress hostAddress(GuestAddress gpa) {
        if (backing.isEmpty()) {
            throw new IllegalStateException("region " + name + " (" + kind + ") has no host memory");
        }
        if (!range.contains(gpa.value())) {
            throw new IllegalArgumentException(gpa + " is outside region " + name + " " + range);
        }
        return backing.get().hostAddress(gpa.value() - range.base());
    }

    @Override
    public String toString() {
        return name + "(" + kind + " " + range + (priority != 0 ? " prio " + priority : "")
                + backing.map(b -> " @" + b).orElse("") + device.map(d -> " dev " + d).orElse("") + ")";
    }
}
