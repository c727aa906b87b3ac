package io.actovisor.memory;

import java.util.Optional;

/**
 * A non-empty range of unsigned 64-bit addresses {@code [base, base + size)}. The range may end exactly at 2^64,
 * but a range whose end would lie beyond it cannot be constructed: the error names base and size. Ranges are used
 * for guest-physical addresses, IOVAs and host virtual addresses alike; the owner says which.
 */
public record AddressRange(long base, long size) implements Comparable<AddressRange> {
    public AddressRange {
        if (size == 0) {
            throw new IllegalArgumentException("address range at base " + Unsigned.hex(base) + " has size 0");
        }
        if (Long.compareUnsigned(base + (size - 1), base) < 0) {
            throw new IllegalArgumentException("address range with base " + Unsigned.hex(base) + " and size "
                    + Unsigned.hex(size) + " ends beyond 2^64");
        }
    }

    public static AddressRange of(long base, long size) {
        return new AddressRange(base, size);
    }

    public static AddressRange of(GuestAddress base, long size) {
        return new AddressRange(base.value(), size);
    }

    /** The range {@code [first, last]}, both inclusive. */
    public static AddressRange inclusive(long first, long last) {
        if (Long.compareUnsigned(last, first) < 0) {
            throw new IllegalArgumentException("address range from " + Unsigned.hex(first) + " to "
                    + Unsigned.hex(last) + " is reversed");
        }
        if (first == 0 && last == -1L) {
            throw new IllegalArgumentException("the whole 64-bit space has no 64-bit size");
        }
        return new AddressRange(first, last - first + 1);
    }

    /** The last address inside the range (inclusive); never overflows. */
    public long last() {
        return base + (size - 1);
    }

    /** The first address past the range; throws if the range ends exactly at 2^64. */
    public long end() {
        return Unsigned.add(base, size, "range end");
    }

    public GuestAddress guestBase() {
        return new GuestAddress(base);
    }

    public boolean contains(long address) {
        return Long.compareUnsigned(address, base) >= 0 && Long.compareUnsigned(address, last()) <= 0;
    }

    public boolean contains(AddressRange other) {
        return contains(other.base) && contains(other.last());
    }

    public boolean overlaps(AddressRange other) {
        return Long.compareUnsigned(base, other.last()) <= 0 && Long.compareUnsigned(other.base, last()) <= 0;
    }

    /** The common part of two ranges, if any. */
    public Optional<AddressRange> intersect(AddressRange other) {
        if (!overlaps(other)) {
            return Optional.empty();
        }
        long first = Long.compareUnsigned(base, other.base) >= 0 ? base : other.base;
        long lastAddr = Long.compareUnsigned(last(), other.last()) <= 0 ? last() : other.last();
        return Optional.of(new AddressRange(first, lastAddr - first + 1));
    }

    /** A range of the same size at {@code newBase}. */
    public AddressRange withBase(long newBase) {
        return new AddressRange(newBase, size);
    }

    /** The largest sub-range whose both ends are aligned to {@code alignment}, if any is left. */
    public Optional<AddressRange> alignInward(long alignment) {
        Unsigned.checkPowerOfTwo(alignment);
        long mask = alignment - 1;
        long first = (base + mask) & ~mask;
        if (Long.compareUnsigned(first, base) < 0) {
            return Optional.empty(); // rounding up wrapped past 2^64
        }
        long endExclusive = last() + 1; // 0 stands for 2^64, which every alignment divides
        long alignedEnd = endExclusive & ~mask;
        if (endExclusive != 0 && Long.compareUnsigned(alignedEnd, first) <= 0) {
            return Optional.empty();
        }
        if (endExclusive == 0 && first == 0 && base != 0) {
            return Optional.empty();
        }
        return Optional.of(new AddressRange(first, alignedEnd - first));
    }

    public boolean isAligned(long alignment) {
        return Unsigned.isAligned(base, alignment) && Unsigned.isAligned(size, alignment);
    }

    @Override
    public int compareTo(AddressRange other) {
        int c = Long.compareUnsigned(base, other.base);
        return c != 0 ? c : Long.compareUnsigned(size, other.size);
    }

    @Override
    public String toString() {
        return "[" + Unsigned.hex(base) + ", " + Unsigned.hex(last()) + "]";
    }
}
