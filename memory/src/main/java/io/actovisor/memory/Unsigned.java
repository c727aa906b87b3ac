package io.actovisor.memory;

/** Checked unsigned 64-bit arithmetic shared by the address types. */
final class Unsigned {
    private Unsigned() {
    }

    static String hex(long value) {
        return "0x" + Long.toHexString(value);
    }

    static long add(long a, long b, String what) {
        long sum = a + b;
        if (Long.compareUnsigned(sum, a) < 0) {
            throw new ArithmeticException(what + " " + hex(a) + " + " + hex(b) + " overflows 64 bits");
        }
        return sum;
    }

    static long sub(long a, long b, String what) {
        if (Long.compareUnsigned(a, b) < 0) {
            throw new ArithmeticException(what + " " + hex(a) + " - " + hex(b) + " is below zero");
        }
        return a - b;
    }

    static void checkPowerOfTwo(long alignment) {
        if (alignment == 0 || (alignment & (alignment - 1)) != 0) {
            throw new IllegalArgumentException("alignment " + hex(alignment) + " is not a power of two");
        }
    }

    static long alignUp(long value, long alignment, String what) {
        checkPowerOfTwo(alignment);
        long mask = alignment - 1;
        if ((value & mask) == 0) {
            return value;
        }
        return add(value & ~mask, alignment, what);
    }

    static long alignDown(long value, long alignment) {
        checkPowerOfTwo(alignment);
        return value & ~(alignment - 1);
    }

    static boolean isAligned(long value, long alignment) {
        checkPowerOfTwo(alignment);
        return (value & (alignment - 1)) == 0;
    }
}
