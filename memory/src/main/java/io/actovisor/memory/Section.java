package io.actovisor.memory;

import java.util.Objects;
import java.util.Optional;

/**
 * A piece of a {@link FlatView}: the part {@code range} of the guest address space where {@code region} is the one
 * that answers, starting {@code offsetInRegion} bytes into that region.
 */
public record Section(AddressRange range, MemoryRegion region, long offsetInRegion) implements Comparable<Section> {
    public Section {
        Objects.requireNonNull(range, "range");
        Objects.requireNonNull(region, "region");
    }

    public RegionKind kind() {
        return region.kind();
    }

    public GuestAddress guestBase() {
        return new GuestAddress(range.base());
    }

    /** The host address of the section's first byte, for RAM and ROM sections. */
    public Optional<HostAddress> hostBase() {
        return region.backing().map(b -> b.hostAddress(offsetInRegion));
    }

    /** The host address backing guest address {@code gpa} of this section. */
    public HostAddress hostAddress(GuestAddress gpa) {
        if (!range.contains(gpa.value())) {
            throw new IllegalArgumentException(gpa + " is outside section " + this);
        }
        return region.hostAddress(gpa);
    }

    /**
     * The host memory behind guest range {@code guest} of this RAM or ROM section, as a block and an offset range
     * in it.
     */
    public HostSpan hostSpan(AddressRange guest) {
        if (!range.contains(guest.base()) || !range.contains(guest.last())) {
            throw new IllegalArgumentException(guest + " is not inside section " + this);
        }
        HostBacking backing = region.backing().orElseThrow(() -> new IllegalArgumentException("section " + this
                + " has no host memory"));
        long delta = guest.base() - region.range().base(); // as hostAddress(gpa) computes it
        return new HostSpan(backing.memory(), backing.offset() + delta, guest.size());
    }

    /** Whether {@code next} starts right where this ends and continues the same region at the same offset. */
    public boolean isContinuedBy(Section next) {
        return next.region.equals(region)
                && range.last() + 1 == next.range.base()
                && offsetInRegion + range.size() == next.offsetInRegion;
    }

    @Override
    public int compareTo(Section other) {
        return range.compareTo(other.range);
    }

    @Override
    public String toString() {
        return range + " " + region.name() + "+0x" + Long.toHexString(offsetInRegion) + " " + region.kind();
    }
}
