package io.actovisor.devices.guest.scripted;

import io.actovisor.memory.AddressRange;
import java.util.ArrayList;
import java.util.List;

/**
 * The order in which the workload gives guest frames to the balloon, as the firmware's {@code balloon.c} does: first
 * the whole 2 MiB-aligned blocks of its free RAM (the RAM above the work area it never touches), from the top down,
 * so a coordinated container can unmap whole blocks; then the free frames outside such blocks; the work area last.
 * Index {@code i} is the {@code i}-th frame inflated; a deflate gives back the highest indexes first.
 *
 * @param freeBase  the first byte of free RAM (the end of the work area), 4 KiB aligned
 * @param freeEnd   the end of free RAM, 4 KiB aligned
 * @param workBase  the work area's first byte
 * @param workPages the work area's frames
 */
public record BalloonablePages(long freeBase, long freeEnd, long workBase, long workPages) {
    /** The block the balloon prefers to give whole (the default {@code discard-block-size}). */
    public static final long BLOCK = 2L << 20;
    private static final long PAGE = GuestLayout.PAGE;

    public BalloonablePages {
        if (freeBase % PAGE != 0 || freeEnd % PAGE != 0 || freeEnd < freeBase || workBase % PAGE != 0
                || workPages < 0) {
            throw new IllegalArgumentException("free RAM [0x" + Long.toHexString(freeBase) + ", 0x"
                    + Long.toHexString(freeEnd) + ") and the work area at 0x" + Long.toHexString(workBase)
                    + " must be page-aligned and ordered");
        }
    }

    /** The frames of a guest with {@code ramEnd} bytes of RAM from 0 and the work area of {@code layout}. */
    public static BalloonablePages of(GuestLayout layout, long ramEnd) {
        long workEnd = layout.workBase() + layout.workBytes();
        long end = Math.max(workEnd, ramEnd & -PAGE);
        return new BalloonablePages(workEnd, end, layout.workBase(), layout.workPages());
    }

    /** Whole aligned blocks of free RAM. */
    public long blocks() {
        long first = (freeBase + BLOCK - 1) & -BLOCK;
        long last = freeEnd & -BLOCK;
        return last > first ? (last - first) / BLOCK : 0;
    }

    /** Free frames (in blocks or not). */
    public long freePages() {
        return (freeEnd - freeBase) / PAGE;
    }

    /** Every frame the balloon may take. */
    public long count() {
        return freePages() + workPages;
    }

    /** Frames of the work area the balloon holds when it holds {@code held} frames in all. */
    public long workPagesHeld(long held) {
        return Math.max(0, Math.min(workPages, held - freePages()));
    }

    /** The frame number of the {@code index}-th frame inflated. */
    public long frame(long index) {
        if (index < 0 || index >= count()) {
            throw new IndexOutOfBoundsException("frame index " + index + " of " + count());
        }
        long blockFrames = BLOCK / PAGE;
        long inBlocks = blocks() * blockFrames;
        long top = freeEnd & -BLOCK;
        if (index < inBlocks) {
            long block = index / blockFrames;
            return (top - (block + 1) * BLOCK) / PAGE + index % blockFrames;
        }
        long rest = index - inBlocks;
        if (rest >= freePages() - inBlocks) {
            return workBase / PAGE + (rest - (freePages() - inBlocks));
        }
        if (blocks() == 0) {
            return freeBase / PAGE + rest;
        }
        long blocksStart = top - blocks() * BLOCK;
        long below = (blocksStart - freeBase) / PAGE; // free frames under the lowest whole block
        return rest < below ? freeBase / PAGE + rest : top / PAGE + (rest - below);
    }

    /** The frames with indexes {@code [from, to)}, in index order. */
    public long[] frames(long from, long to) {
        long[] out = new long[(int) (to - from)];
        for (long i = from; i < to; i++) {
            out[(int) (i - from)] = frame(i);
        }
        return out;
    }

    /**
     * The whole free blocks not held when the balloon holds {@code held} frames, each a chunk, from the block
     * {@code held} reaches up to (not including) block index {@code upTo}: what a free page report offers.
     */
    public List<AddressRange> freeBlocks(long held, long upTo) {
        long blockFrames = BLOCK / PAGE;
        long first = Math.min(blocks(), (held + blockFrames - 1) / blockFrames);
        List<AddressRange> out = new ArrayList<>();
        for (long b = first; b < Math.min(upTo, blocks()); b++) {
            out.add(AddressRange.of(frame(b * blockFrames) * PAGE, BLOCK));
        }
        return out;
    }

    /** The index of the first whole block not (even partly) held when the balloon holds {@code held} frames. */
    public long firstFreeBlock(long held) {
        long blockFrames = BLOCK / PAGE;
        return Math.min(blocks(), (held + blockFrames - 1) / blockFrames);
    }
}
