package io.actovisor.memory;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.junit.jupiter.api.Test;

/** A view follows publications; a snapshot taken before one stays as it was. */
class GuestMemoryViewTest {
    private static final long PAGE = 4096;

    @Test
    void anEmptyViewFaultsUntilASnapshotIsPublished() {
        GuestMemoryView view = GuestMemoryView.empty();
        assertFalse(view.current().isMemory(GuestAddress.ZERO, 1));
        assertThrows(GuestMemoryException.class, () -> view.current().readByte(GuestAddress.ZERO));
        try (HostMemory low = HostMemory.anonymous("view-test-low", PAGE)) {
            view.publish(GuestMemory.of(FlatView.of(List.of(MemoryRegion.ram("low", GuestAddress.ZERO, low)))));
            view.current().writeInt(GuestAddress.of(16), 0x12345678);
            assertTrue(view.current().isMemory(GuestAddress.ZERO, PAGE));
            assertEquals(0x12345678, low.readInt(low.base().checkedAdd(16)));
        }
    }

    @Test
    void aSnapshotTakenBeforeAHotAddDoesNotSeeItButTheViewDoes() {
        try (HostMemory low = HostMemory.anonymous("view-test-low", PAGE);
                HostMemory high = HostMemory.anonymous("view-test-high", PAGE)) {
            MemoryRegion lowRam = MemoryRegion.ram("low", GuestAddress.ZERO, low);
            GuestMemoryView view = GuestMemoryView.of(GuestMemory.of(FlatView.of(List.of(lowRam))));
            GuestMemory before = view.current();
            GuestMemory after = GuestMemory.of(FlatView.of(List.of(lowRam,
                    MemoryRegion.ram("high", GuestAddress.of(4 * PAGE), high))));
            view.publish(after);
            assertSame(after, view.current());
            view.current().writeLong(GuestAddress.of(4 * PAGE + 8), 42);
            assertFalse(before.isMemory(GuestAddress.of(4 * PAGE), 8), "a snapshot is frozen");
            assertEquals(42, view.current().readLong(GuestAddress.of(4 * PAGE + 8)));
            assertEquals(42, high.readLong(high.base().checkedAdd(8)));
            assertThrows(NullPointerException.class, () -> view.publish(null));
        }
    }
}
