package io.actovisor.memory;

/**
 * An address in this process's virtual address space (where guest RAM is mapped), as an unsigned 64-bit value. Arithmetic is checked: an
 * operation whose result does not fit in 64 unsigned bits throws {@link ArithmeticException} naming the operands.
 */
public record HostAddress(long value) implements Comparable<HostAddress> {
    public static final HostAddress ZERO = new HostAddress(0);

    public static HostAddress of(long value) {
        return new HostAddress(value);
    }

    /** {@code this + offset}, refusing to wrap past 2^64 - 1. */
    public HostAddress checkedAdd(long offset) {
        return new HostAddress(Unsigned.add(value, offset, "host address"));
    }

    /** {@code this - offset}, refusing to go below zero. */
    public HostAddress checkedSub(long offset) {
        return new HostAddress(Unsigned.sub(value, offset, "host address"));
    }

    /** The distance from {@code base} to this address; throws if this lies below {@code base}. */
    public long offsetFrom(HostAddress base) {
        return Unsigned.sub(value, base.value, "host address");
    }

    /** Round up to a power-of-two alignment, refusing to wrap. */
    public HostAddress alignUp(long alignment) {
        return new HostAddress(Unsigned.alignUp(value, alignment, "host address"));
    }

    /** Round down to a power-of-two alignment. */
    public HostAddress alignDown(long alignment) {
        return new HostAddress(Unsigned.alignDown(value, alignment));
    }

    public boolean isAligned(long alignment) {
        return Unsigned.isAligned(value, alignment);
    }

    @Override
    public int compareTo(HostAddress other) {
        return Long.compareUnsigned(value, other.value);
    }

    @Override
    public String toString() {
        return "HVA 0x" + Long.toHexString(value);
    }
}
