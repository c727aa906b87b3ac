package io.actovisor.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.junit.jupiter.api.Test;

class PlacementTest {
    private static final long MIB = 1 << 20;

    private static final List<Placement.Node> NODES = List.of(
            new Placement.Node("a", 64 * MIB, 56 * MIB),
            new Placement.Node("b", 64 * MIB, 48 * MIB));

    @Test
    void aBalloonableVmGoesWhereTheOvercommittedRoomIsLargest() {
        Placement.Decision d = Placement.place(new Placement.Candidate("vm", 32 * MIB, false, true), NODES, 1.5);
        Placement.Placed placed = assertInstanceOf(Placement.Placed.class, d);
        assertEquals("b", placed.node());
    }

    @Test
    void aPinnedVmNeedsItsWholeRamWithinTheCapacity() {
        Placement.Decision d = Placement.place(new Placement.Candidate("vm", 32 * MIB, true, false), NODES, 1.5);
        Placement.Refused refused = assertInstanceOf(Placement.Refused.class, d);
        assertTrue(refused.reason().contains("largest free amount is 16 MiB (16777216 bytes) on b"), refused.reason());
        assertTrue(refused.reason().contains("pinned"), refused.reason());
    }

    @Test
    void aPinnedVmThatFitsWithoutOvercommitIsPlaced() {
        Placement.Decision d = Placement.place(new Placement.Candidate("vm", 16 * MIB, true, false), NODES, 1.5);
        assertEquals("b", assertInstanceOf(Placement.Placed.class, d).node());
    }

    @Test
    void aVmWithoutABalloonIsNotOvercommitted() {
        Placement.Decision d = Placement.place(new Placement.Candidate("vm", 24 * MIB, false, false), NODES, 1.5);
        Placement.Refused refused = assertInstanceOf(Placement.Refused.class, d);
        assertTrue(refused.reason().contains("no balloon"), refused.reason());
    }

    @Test
    void aBalloonableVmBeyondTheRatioIsRefusedNamingTheRatio() {
        Placement.Decision d = Placement.place(new Placement.Candidate("vm", 64 * MIB, false, true), NODES, 1.5);
        Placement.Refused refused = assertInstanceOf(Placement.Refused.class, d);
        assertTrue(refused.reason().contains("1.5 x its capacity"), refused.reason());
        assertTrue(refused.reason().contains("48 MiB"), refused.reason());
    }

    @Test
    void noNodesIsARefusal() {
        assertInstanceOf(Placement.Refused.class, Placement.place(new Placement.Candidate("vm", MIB, false, true),
                List.of(), 1.5));
    }
}
