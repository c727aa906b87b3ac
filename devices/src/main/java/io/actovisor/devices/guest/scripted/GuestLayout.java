package io.actovisor.devices.guest.scripted;

/**
 * Where a scripted guest keeps its driver structures in guest RAM: the same places the firmware guest uses
 * (virtqueues from 0x90000, one 4 KiB page per queue; the balloon's PFN buffer at 0x98000 and its statistics buffer
 * at 0x99000; the DMA and work area from 1 MiB). RAM must start at guest-physical 0 and cover the work area.
 *
 * @param workBase  the first byte of the work area the workload writes and checksums
 * @param workBytes its size, a multiple of 4 KiB
 */
public record GuestLayout(long workBase, long workBytes) {
    /** Bytes of one 4 KiB guest frame. */
    public static final long PAGE = 4096;
    /** The first virtqueue's page; queue {@code i} of device {@code d} is at {@link #queue}. */
    public static final long QUEUES = 0x90000;
    /** The balloon driver's PFN buffer: up to 1024 frames per request. */
    public static final long PFN_BUFFER = 0x98000;
    /** The balloon driver's statistics buffer. */
    public static final long STATS_BUFFER = 0x99000;
    /** A scratch page misbehaviour scripts may use. */
    public static final long SCRATCH = 0x9a000;
    /** Where the work area starts by default: 1 MiB, as the firmware's boot layout. */
    public static final long WORK_BASE = 1L << 20;

    public GuestLayout {
        if (workBase < WORK_BASE || workBase % PAGE != 0 || workBytes < 0 || workBytes % PAGE != 0) {
            throw new IllegalArgumentException("the work area [0x" + Long.toHexString(workBase) + ", +0x"
                    + Long.toHexString(workBytes) + ") must be page-aligned and start at or above 1 MiB");
        }
    }

    /** The default layout: {@code workBytes} of work area from 1 MiB. */
    public static GuestLayout of(long workBytes) {
        return new GuestLayout(WORK_BASE, workBytes);
    }

    /** The guest page holding queue {@code index} of the {@code slot}-th virtio device (0..1, 4 queues each). */
    public static long queue(int slot, int index) {
        if (slot < 0 || slot > 1 || index < 0 || index > 3) {
            throw new IllegalArgumentException("queue " + index + " of device slot " + slot + " is outside the layout"
                    + " (2 devices of 4 queues)");
        }
        return QUEUES + PAGE * (4L * slot + index);
    }

    /** Pages of the work area. */
    public long workPages() {
        return workBytes / PAGE;
    }
}
