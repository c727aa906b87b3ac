package io.actovisor.memory;

/**
 * An address in the guest's physical address space, as an unsigned 64-bit value. Arithmetic is checked: an
 * operation whose result does not fit in 64 unsigned bits throws {@link ArithmeticException} naming the operands.
 */
public record GuestAddress(long value) implements Comparable<GuestAddress> {
    public static final GuestAddress ZERO = new GuestAddress(0);

    public static GuestAddress of(long value) {
        return new GuestAddress(value);
    }

    /** {@code this + offset}, refusing to wrap past 2^64 - 1. */
    public GuestAddress checkedAdd(long offset) {
        return new GuestAddress(Unsigned.add(value, offset, "guest address"));
    }

    /** {@code this - offset}, refusing to go below zero. */
    public GuestAddress checkedSub(long offset) {
        return new GuestAddress(Unsigned.sub(value, offset, "guest address"));
    }

    /** The distance from {@code base} to this address; throws if this lies below {@code base}. */
    public long offsetFrom(GuestAddress base) {
        return Unsigned.sub(value, base.value, "guest address");
    }

    /** Round up to a power-of-two alignment, refusing to wrap. */
    public GuestAddress alignUp(long alignment) {
        return new GuestAddress(Unsigned.alignUp(value, alignment, "guest address"));
    }

    /** Round down to a power-of-two alignment. */
    public GuestAddress alignDown(long alignment) {
        return new GuestAddress(Unsigned.alignDown(value, alignment));
    }

    public boolean isAligned(long alignment) {
        return Unsigned.isAligned(value, alignment);
    }

    @Override
    public int compareTo(GuestAddress other) {
        return Long.compareUnsigned(value, other.value);
    }

    @Override
    public String toString() {
        return "GPA 0x" + Long.toHexString(value);
    }
}
