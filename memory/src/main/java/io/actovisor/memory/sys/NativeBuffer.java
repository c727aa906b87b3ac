package io.actovisor.memory.sys;

import com.sun.jna.Memory;
import com.sun.jna.Pointer;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * A bounds-checked window on native memory: either owned (allocated here, freed by {@link #close()}) or a view of
 * memory someone else owns (an mmap'ed ring or {@code kvm_run}). Kernel structures are written into these at the
 * offsets the ABI tests check, and passed to the kernel by {@link #address()}.
 *
 * <p>The acquire/release accessors exist for rings shared with the kernel (io_uring heads and tails).
 */
public final class NativeBuffer implements AutoCloseable {
    private static final VarHandle INT = MethodHandles.byteBufferViewVarHandle(int[].class, ByteOrder.LITTLE_ENDIAN);
    private static final VarHandle LONG = MethodHandles.byteBufferViewVarHandle(long[].class, ByteOrder.LITTLE_ENDIAN);

    private final long address;
    private final int size;
    private final ByteBuffer bytes;
    private Memory owned;
    private boolean closed;

    private NativeBuffer(long address, int size, Memory owned) {
        this.address = address;
        this.size = size;
        this.owned = owned;
        this.bytes = size == 0 ? ByteBuffer.allocateDirect(0)
                : new Pointer(address).getByteBuffer(0, size).order(ByteOrder.LITTLE_ENDIAN);
    }

    /** Allocate {@code size} zeroed bytes, 16-byte aligned, owned by the returned buffer. */
    public static NativeBuffer allocate(int size) {
        if (size <= 0) {
            throw new IllegalArgumentException("native buffer size must be positive, was " + size);
        }
        Memory memory = new Memory(size + 16L);
        memory.clear();
        Memory aligned = (Memory) memory.align(16);
        return new NativeBuffer(Pointer.nativeValue(aligned), size, memory);
    }

    /** A view of memory owned elsewhere (e.g. an mmap'ed region); {@link #close()} does not free it. */
    public static NativeBuffer view(long address, long size) {
        if (size < 0 || size > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("native view size " + size + " out of range");
        }
        if (address == 0) {
            throw new IllegalArgumentException("native view of address 0");
        }
        return new NativeBuffer(address, (int) size, null);
    }

    public long address() {
        return address;
    }

    public int size() {
        return size;
    }

    private int check(long offset, int length) {
        if (offset < 0 || length < 0 || offset + length > size) {
            throw new IndexOutOfBoundsException("access of " + length + " bytes at offset " + offset
                    + " is outside the " + size + "-byte native buffer at 0x" + Long.toHexString(address));
        }
        if (closed) {
            throw new IllegalStateException("native buffer at 0x" + Long.toHexString(address) + " is closed");
        }
        return (int) offset;
    }

    public byte getByte(long offset) {
        return bytes.get(check(offset, 1));
    }

    public NativeBuffer putByte(long offset, byte value) {
        bytes.put(check(offset, 1), value);
        return this;
    }

    public short getShort(long offset) {
        return bytes.getShort(check(offset, 2));
    }

    public NativeBuffer putShort(long offset, short value) {
        bytes.putShort(check(offset, 2), value);
        return this;
    }

    public int getInt(long offset) {
        return bytes.getInt(check(offset, 4));
    }

    public NativeBuffer putInt(long offset, int value) {
        bytes.putInt(check(offset, 4), value);
        return this;
    }

    public long getLong(long offset) {
        return bytes.getLong(check(offset, 8));
    }

    public NativeBuffer putLong(long offset, long value) {
        bytes.putLong(check(offset, 8), value);
        return this;
    }

    /** A load that no later load or store may be reordered before (the consumer side of a ring). */
    public int getIntAcquire(long offset) {
        return (int) INT.getAcquire(bytes, check(offset, 4));
    }

    /** A store that no earlier load or store may be reordered after (the producer side of a ring). */
    public void putIntRelease(long offset, int value) {
        INT.setRelease(bytes, check(offset, 4), value);
    }

    public long getLongAcquire(long offset) {
        return (long) LONG.getAcquire(bytes, check(offset, 8));
    }

    public void getBytes(long offset, byte[] dst, int dstOffset, int length) {
        bytes.get(check(offset, length), dst, dstOffset, length);
    }

    public byte[] getBytes(long offset, int length) {
        byte[] out = new byte[length];
        getBytes(offset, out, 0, length);
        return out;
    }

    public NativeBuffer putBytes(long offset, byte[] src, int srcOffset, int length) {
        bytes.put(check(offset, length), src, srcOffset, length);
        return this;
    }

    public NativeBuffer putBytes(long offset, byte[] src) {
        return putBytes(offset, src, 0, src.length);
    }

    /** Zero {@code length} bytes from {@code offset}. */
    public NativeBuffer clear(long offset, int length) {
        int at = check(offset, length);
        for (int i = 0; i < length; i++) {
            bytes.put(at + i, (byte) 0);
        }
        return this;
    }

    /** Zero the whole buffer. */
    public NativeBuffer clear() {
        return clear(0, size);
    }

    /** Frees owned memory; a no-op for views and on the second call. */
    @Override
    public void close() {
        Memory memory = owned;
        if (memory != null) {
            owned = null;
            closed = true;
            memory.close();
        }
    }
}
