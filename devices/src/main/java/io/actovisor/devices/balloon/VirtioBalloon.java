package io.actovisor.devices.balloon;

import io.actovisor.devices.virtio.VirtioDevice;

/**
 * The virtio-balloon device (ID 5): config space {@code num_pages} (the target, in 4 KiB pages, written by the
 * device) and {@code actual} (what the driver holds, written by the driver); queues inflate (0), deflate (1) and
 * statistics (2) and free page reporting (after the statistics queue: 3, or 2 when the driver did not negotiate
 * {@code STATS_VQ}, as Linux numbers only the queues that exist); features {@code MUST_TELL_HOST}, {@code STATS_VQ},
 * {@code DEFLATE_ON_OOM} (as configured) and {@code REPORTING}. It does not discard memory itself: the frames and
 * chunks it receives go to the balloon actor, where the discard manager's rules and coalescing apply.
 */
public final class VirtioBalloon implements VirtioDevice {
    public static final int DEVICE_ID = 5;
    /** The driver tells the host before it reuses a ballooned page (it deflates first). */
    public static final long F_MUST_TELL_HOST = 1L << 0;
    public static final long F_STATS_VQ = 1L << 1;
    public static final long F_DEFLATE_ON_OOM = 1L << 2;
    /** Free page reporting (virtio 1.2 {@code VIRTIO_BALLOON_F_PAGE_REPORTING}, bit 5): the reporting queue. */
    public static final long F_REPORTING = 1L << 5;
    public static final int INFLATE_QUEUE = 0;
    public static final int DEFLATE_QUEUE = 1;
    public static final int STATS_QUEUE = 2;
    public static final int QUEUE_SIZE = 256;
    /** Config offsets. */
    public static final int CONFIG_NUM_PAGES = 0;
    public static final int CONFIG_ACTUAL = 4;

    private final boolean deflateOnOom;
    private int numPages;
    private int actual;

    public VirtioBalloon(boolean deflateOnOom) {
        this.deflateOnOom = deflateOnOom;
    }

    @Override
    public int deviceId() {
        return DEVICE_ID;
    }

    @Override
    public long features() {
        return F_MUST_TELL_HOST | F_STATS_VQ | (deflateOnOom ? F_DEFLATE_ON_OOM : 0) | F_REPORTING;
    }

    @Override
    public int[] queueMaxSizes() {
        // inflate, deflate, statistics, reporting; without STATS_VQ the reporting queue is 2 and 3 stays unused.
        return new int[] {QUEUE_SIZE, QUEUE_SIZE, QUEUE_SIZE, QUEUE_SIZE};
    }

    /** The statistics queue's index under {@code negotiated} features, or -1 when there is none. */
    public static int statisticsQueue(long negotiated) {
        return (negotiated & F_STATS_VQ) != 0 ? STATS_QUEUE : -1;
    }

    /**
     * The reporting queue's index under {@code negotiated} features, or -1 when there is none: queues are numbered
     * in order among those that exist (free page hinting, which would come before it, is not offered).
     */
    public static int reportingQueue(long negotiated) {
        if ((negotiated & F_REPORTING) == 0) {
            return -1;
        }
        return (negotiated & F_STATS_VQ) != 0 ? STATS_QUEUE + 1 : STATS_QUEUE;
    }

    @Override
    public long readConfig(int offset, int size) {
        long config = (numPages & 0xffffffffL) | (actual & 0xffffffffL) << 32;
        if (offset < 0 || offset + size > 8) {
            return 0;
        }
        long value = config >>> (8 * offset);
        return size == 8 ? value : value & ((1L << (8 * size)) - 1);
    }

    @Override
    public void writeConfig(int offset, int size, long value) {
        if (offset == CONFIG_ACTUAL && size == 4) {
            actual = (int) value;
        }
    }

    @Override
    public void reset() {
        actual = 0;
    }

    /** Set the target; returns whether it changed (the transport then signals a config change). */
    public boolean setTargetPages(long pages) {
        int clamped = (int) Math.min(pages, 0xffffffffL);
        boolean changed = clamped != numPages;
        numPages = clamped;
        return changed;
    }

    public long targetPages() {
        return numPages & 0xffffffffL;
    }

    /** Pages the driver says it holds. */
    public long actualPages() {
        return actual & 0xffffffffL;
    }

    /** The 32-bit little-endian page frame numbers in {@code buffer}. */
    public static long[] frames(byte[] buffer) {
        long[] frames = new long[buffer.length / 4];
        java.nio.ByteBuffer b = java.nio.ByteBuffer.wrap(buffer).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < frames.length; i++) {
            frames[i] = b.getInt() & 0xffffffffL;
        }
        return frames;
    }
}
