package io.actovisor.devices.balloon;

import java.util.Map;
import java.util.TreeMap;

/**
 * The guest's memory statistics from the virtio-balloon stats queue, by tag name; tags this version does not know
 * are kept as {@code tag-N}.
 */
public record BalloonStatistics(Map<String, Long> values) {
    private static final String[] TAGS = {"swap_in", "swap_out", "major_faults", "minor_faults", "free_memory",
        "total_memory", "available_memory", "disk_caches", "hugetlb_allocations", "hugetlb_failures"};

    public BalloonStatistics {
        values = Map.copyOf(values);
    }

    /** Parse {@code struct virtio_balloon_stat} entries (u16 tag, u64 value, packed, little-endian). */
    public static BalloonStatistics parse(byte[] buffer) {
        Map<String, Long> values = new TreeMap<>();
        java.nio.ByteBuffer b = java.nio.ByteBuffer.wrap(buffer).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        while (b.remaining() >= 10) {
            int tag = b.getShort() & 0xffff;
            long value = b.getLong();
            values.put(tag < TAGS.length ? TAGS[tag] : "tag-" + tag, value);
        }
        return new BalloonStatistics(values);
    }
}
