package io.actovisor.actors.balloon;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.memory.AddressRange;
import java.util.List;
import java.util.TreeSet;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.constraints.LongRange;
import net.jqwik.api.constraints.Size;
import org.junit.jupiter.api.Test;

/** Coalescing against the obvious reference: the set of frames, and maximal runs. */
class FrameRunsTest {
    @Property(tries = 2000)
    void runsCoverExactlyTheFramesAndAreMaximal(@ForAll @Size(max = 200) List<@LongRange(min = 0, max = 300) Long>
            frames) {
        long[] input = frames.stream().mapToLong(Long::longValue).toArray();
        List<AddressRange> runs = FrameRuns.coalesce(input);
        TreeSet<Long> covered = new TreeSet<>();
        long previousEnd = -2;
        for (AddressRange run : runs) {
            assertEquals(0, run.base() % FrameRuns.FRAME_SIZE);
            assertEquals(0, run.size() % FrameRuns.FRAME_SIZE);
            long first = run.base() / FrameRuns.FRAME_SIZE;
            assertTrue(first > previousEnd + 1 || previousEnd < 0 && first >= 0, "runs are sorted and not adjacent");
            for (long f = first; f < first + run.size() / FrameRuns.FRAME_SIZE; f++) {
                covered.add(f);
            }
            previousEnd = first + run.size() / FrameRuns.FRAME_SIZE - 1;
        }
        assertEquals(new TreeSet<>(frames), covered);
    }

    @Test
    void examples() {
        assertEquals(List.of(AddressRange.of(0x1000, 0x3000), AddressRange.of(0x8000, 0x1000)),
                FrameRuns.coalesce(new long[] {3, 1, 2, 8, 2}));
        assertEquals(List.of(), FrameRuns.coalesce(new long[0]));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> FrameRuns.coalesce(new long[] {-5}));
        assertTrue(e.getMessage().contains("-5"));
    }
}
