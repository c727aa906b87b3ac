package io.actovisor.memory;

import java.util.Objects;
import java.util.concurrent.atomic.AtomicReference;

/**
 * Guest memory as it changes: a holder of the current immutable {@link GuestMemory} snapshot, which its owner (the
 * address space) replaces after every acknowledged commit, as rust-vmm's {@code GuestMemoryAtomic} does.
 *
 * <p>Readers take {@link #current()} once per access or per request and work on that snapshot to the end, so one
 * request sees one consistent memory map even if a commit lands meanwhile; the next request sees the new map. A
 * device keeps the view, never a snapshot: a snapshot is frozen, the view follows hot-added and removed RAM.
 *
 * <p>Thread-safe: the owner publishes from its actor, devices read from theirs and from vCPU threads.
 */
public final class GuestMemoryView {
    private final AtomicReference<GuestMemory> current;

    private GuestMemoryView(GuestMemory initial) {
        this.current = new AtomicReference<>(Objects.requireNonNull(initial, "initial"));
    }

    /** A view with no memory yet: every access faults until the owner publishes a snapshot. */
    public static GuestMemoryView empty() {
        return new GuestMemoryView(GuestMemory.of(FlatView.empty()));
    }

    /** A view that starts at {@code initial} (for memory that no address space changes, only that snapshot). */
    public static GuestMemoryView of(GuestMemory initial) {
        return new GuestMemoryView(initial);
    }

    /** The snapshot as of the last publication. */
    public GuestMemory current() {
        return current.get();
    }

    /**
     * Replace the snapshot by {@code next}: the address space calls this once every listener acknowledged a commit.
     * Accesses already running finish on the snapshot they took.
     */
    public void publish(GuestMemory next) {
        current.set(Objects.requireNonNull(next, "next"));
    }
}
