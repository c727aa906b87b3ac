package io.actovisor.memory.sys;

/**
 * One ioctl request: its name as the kernel headers spell it and its number. Each request is declared once, as a
 * constant next to the device that uses it, and a test compares the number with the one a C probe prints.
 *
 * @param name   the macro name, e.g. {@code KVM_RUN}
 * @param number the encoded request number
 */
public record Ioctl(String name, long number) {
    private static final int NRBITS = 8;
    private static final int TYPEBITS = 8;
    private static final int SIZEBITS = 14;
    private static final int NRSHIFT = 0;
    private static final int TYPESHIFT = NRSHIFT + NRBITS;
    private static final int SIZESHIFT = TYPESHIFT + TYPEBITS;
    private static final int DIRSHIFT = SIZESHIFT + SIZEBITS;
    private static final long NONE = 0;
    private static final long WRITE = 1;
    private static final long READ = 2;

    /** {@code _IO(type, nr)}. */
    public static Ioctl io(String name, int type, int nr) {
        return new Ioctl(name, encode(NONE, type, nr, 0));
    }

    /** {@code _IOR(type, nr, size)}: the kernel writes {@code size} bytes to user space. */
    public static Ioctl ior(String name, int type, int nr, int size) {
        return new Ioctl(name, encode(READ, type, nr, size));
    }

    /** {@code _IOW(type, nr, size)}: the kernel reads {@code size} bytes from user space. */
    public static Ioctl iow(String name, int type, int nr, int size) {
        return new Ioctl(name, encode(WRITE, type, nr, size));
    }

    /** {@code _IOWR(type, nr, size)}. */
    public static Ioctl iowr(String name, int type, int nr, int size) {
        return new Ioctl(name, encode(READ | WRITE, type, nr, size));
    }

    private static long encode(long dir, int type, int nr, int size) {
        if (size < 0 || size >= (1 << SIZEBITS)) {
            throw new IllegalArgumentException("ioctl argument size " + size + " does not fit in " + SIZEBITS + " bits");
        }
        return (dir << DIRSHIFT) | ((long) type << TYPESHIFT) | ((long) nr << NRSHIFT) | ((long) size << SIZESHIFT);
    }

    @Override
    public String toString() {
        return name + "(0x" + Long.toHexString(number) + ")";
    }
}
