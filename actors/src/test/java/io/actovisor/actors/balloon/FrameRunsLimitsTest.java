package io.actovisor.actors.balloon;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.actovisor.memory.AddressRange;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The highest frame whose address fits in a (signed) 64-bit guest address is a run; the next one is refused. */
class FrameRunsLimitsTest {
    private static final long TOP = Long.MAX_VALUE / FrameRuns.FRAME_SIZE;

    @Test
    void theTopFrameIsARunAndTheOneAboveIsRefusedNamingIt() {
        assertEquals(List.of(AddressRange.of(TOP * FrameRuns.FRAME_SIZE, FrameRuns.FRAME_SIZE)),
                FrameRuns.coalesce(new long[] {TOP}));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> FrameRuns.coalesce(new long[] {TOP + 1}));
        assertEquals("page frame number " + (TOP + 1) + " is outside the guest address space", e.getMessage());
    }
}
