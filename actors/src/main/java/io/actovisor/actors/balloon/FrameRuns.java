package io.actovisor.actors.balloon;

import io.actovisor.memory.AddressRange;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/** Coalescing of guest page frame numbers into contiguous guest-physical ranges: one discard per run. */
public final class FrameRuns {
    /** The balloon's page size: virtio-balloon frames are 4 KiB whatever the guest's page size. */
    public static final long FRAME_SIZE = 4096;

    private FrameRuns() {
    }

    /**
     * Sort and deduplicate {@code frames} and merge neighbours into ranges of guest-physical addresses, in address
     * order. The input is not modified.
     *
     * @throws IllegalArgumentException if a frame is negative or its address would overflow 64 bits
     */
    public static List<AddressRange> coalesce(long[] frames) {
        long[] sorted = frames.clone();
        Arrays.sort(sorted);
        List<AddressRange> runs = new ArrayList<>();
        int i = 0;
        while (i < sorted.length) {
            long first = sorted[i];
            if (first < 0 || first > (Long.MAX_VALUE / FRAME_SIZE)) {
                throw new IllegalArgumentException("page frame number " + first + " is outside the guest address "
                        + "space");
            }
            long last = first;
            i++;
            while (i < sorted.length && sorted[i] <= last + 1) {
                last = Math.max(last, sorted[i]);
                i++;
            }
            runs.add(AddressRange.of(first * FRAME_SIZE, (last - first + 1) * FRAME_SIZE));
        }
        return runs;
    }
}
