package io.actovisor.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.actovisor.actors.balloon.BalloonActor;
import io.actovisor.actors.discard.DiscardManager.HolderKind;
import io.actovisor.actors.discard.DiscardState;
import java.util.List;
import java.util.Optional;
import org.junit.jupiter.api.Test;

/** How {@link VmMemoryState} classifies a VM's RAM from its discard manager's state and its balloon's status. */
class VmMemoryStateTest {
    private static final long RAM = 64L << 20;

    private static DiscardState discard(boolean guestTellsHost, List<DiscardState.Holder> holders) {
        int uncoordinated = (int) holders.stream().filter(h -> h.kind() == HolderKind.UNCOORDINATED_DISABLED).count();
        List<DiscardState.Fallback> fallbacks = guestTellsHost ? List.of() : holders.stream()
                .filter(h -> h.kind() == HolderKind.COORDINATED_REQUIRED)
                .map(h -> new DiscardState.Fallback(h.name(), "the guest driver did not negotiate MUST_TELL_HOST"))
                .toList();
        return new DiscardState("vm-discard", uncoordinated, holders.size() - uncoordinated, holders, 2L << 20,
                guestTellsHost, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, fallbacks);
    }

    private static DiscardState.Holder holder(String name, HolderKind kind) {
        return new DiscardState.Holder(name, kind, false);
    }

    private static Optional<BalloonActor.BalloonStatus> balloon(boolean unsafeIgnoreInhibitor) {
        return Optional.of(new BalloonActor.BalloonStatus("vm-balloon", 8L << 20, 4L << 20, 0, List.of(), 0, 0, 0, 0,
                0, unsafeIgnoreInhibitor));
    }

    @Test
    void anInhibitingGroupPinsAllRam() {
        VmMemoryState.Reading r = VmMemoryState.of("RUNNING", RAM, discard(true, List.of(
                holder("vfio-group:g0", HolderKind.UNCOORDINATED_DISABLED),
                holder("vfio-group:g1", HolderKind.COORDINATED_REQUIRED))), balloon(false));
        assertEquals(new VmMemoryState.Reading("RUNNING", RAM, RAM, 0, 0, 4L << 20, 8L << 20, 0), r);
    }

    @Test
    void aStoppedHolderStillDrainingStillPins() {
        VmMemoryState.Reading r = VmMemoryState.of("RUNNING", RAM, discard(true, List.of(
                new DiscardState.Holder("vfio-group:g0", HolderKind.UNCOORDINATED_DISABLED, true))), balloon(false));
        assertEquals(RAM, r.pinnedBytes());
        assertEquals(0, r.balloonableBytes());
    }

    @Test
    void coordinatedHoldersWithTheGuestContractAreReclaimable() {
        VmMemoryState.Reading r = VmMemoryState.of("RUNNING", RAM, discard(true, List.of(
                holder("vfio-group:g0", HolderKind.COORDINATED_REQUIRED))), balloon(false));
        assertEquals(new VmMemoryState.Reading("RUNNING", RAM, 0, RAM, RAM, 4L << 20, 8L << 20, 0), r);
    }

    @Test
    void aCoordinatedHolderFallenBackPins() {
        VmMemoryState.Reading r = VmMemoryState.of("RUNNING", RAM, discard(false, List.of(
                holder("vfio-group:g0", HolderKind.COORDINATED_REQUIRED))), balloon(false));
        assertEquals(new VmMemoryState.Reading("RUNNING", RAM, RAM, 0, 0, 4L << 20, 8L << 20, 0), r);
    }

    @Test
    void noHolderIsBalloonableOnly() {
        VmMemoryState.Reading r = VmMemoryState.of("RUNNING", RAM, discard(false, List.of()), balloon(false));
        assertEquals(new VmMemoryState.Reading("RUNNING", RAM, 0, 0, RAM, 4L << 20, 8L << 20, 0), r);
    }

    @Test
    void withoutABalloonNothingIsReclaimable() {
        assertEquals(new VmMemoryState.Reading("RUNNING", RAM, 0, 0, 0, 0, 0, 0), VmMemoryState.of("RUNNING", RAM,
                discard(true, List.of(holder("vfio-group:g0", HolderKind.COORDINATED_REQUIRED))), Optional.empty()));
        assertEquals(new VmMemoryState.Reading("RUNNING", RAM, RAM, 0, 0, 0, 0, 0), VmMemoryState.of("RUNNING", RAM,
                discard(true, List.of(holder("vfio-group:g0", HolderKind.UNCOORDINATED_DISABLED))),
                Optional.empty()));
    }

    @Test
    void unsafeIgnoreInhibitorMakesAPinnedVmBalloonableButNotCoordinated() {
        VmMemoryState.Reading r = VmMemoryState.of("RUNNING", RAM, discard(true, List.of(
                holder("vfio-group:g0", HolderKind.UNCOORDINATED_DISABLED))), balloon(true));
        assertEquals(new VmMemoryState.Reading("RUNNING", RAM, 0, 0, RAM, 4L << 20, 8L << 20, 0), r);
    }
}
