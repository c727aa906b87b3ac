package io.actovisor.actors.discard;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.time.Duration;
import java.util.List;
import java.util.Optional;
import org.junit.jupiter.api.Test;

/**
 * The plain rules around the discard manager that callers build on without an actor: which settings a manager
 * accepts (each at its edge, refused with the value named), which holder kind each container mode registers, how a
 * mode is spelled, and which holders a {@link DiscardState} reports as disabling discards.
 */
class DiscardRulesTest {
    private static final Duration DRAIN = Duration.ofSeconds(7);

    @Test
    void theDefaultsAreTwoMebibyteBlocksFiveSecondsToUnmapAndThreeRemapsApart() {
        DiscardManager.Settings settings = DiscardManager.Settings.withDrainTimeout(DRAIN);
        assertEquals(new DiscardManager.Settings(DRAIN, 2L << 20, Duration.ofSeconds(5), 3, Duration.ofMillis(200)),
                settings);
        assertEquals(new DiscardManager.Settings(DRAIN, 8192, Duration.ofSeconds(5), 3, Duration.ofMillis(200)),
                settings.withBlockSize(8192), "a new block size keeps the other settings");
        assertEquals(new DiscardManager.Settings(DRAIN, 2L << 20, Duration.ofSeconds(9), 3, Duration.ofMillis(200)),
                settings.withReleaseTimeout(Duration.ofSeconds(9)), "a new release timeout keeps the other settings");
    }

    @Test
    void aBlockIsAPowerOfTwoOfAtLeastOneFrame() {
        assertEquals(4096, settings(4096, 1).blockSize(), "one frame is the smallest block");
        assertEquals(1L << 30, settings(1L << 30, 1).blockSize());
        for (long refused : new long[] {2048, 4095, 0, -4096, 3 * 4096, 4096 + 1}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> settings(refused, 1));
            assertEquals("discard block size must be a power of two of at least 4096, was " + refused,
                    e.getMessage());
        }
    }

    @Test
    void aRemapIsTriedAtLeastOnce() {
        assertEquals(1, settings(4096, 1).remapAttempts());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> settings(4096, 0));
        assertEquals("remap attempts must be at least 1, was 0", e.getMessage());
    }

    private static DiscardManager.Settings settings(long blockSize, int remapAttempts) {
        return new DiscardManager.Settings(DRAIN, blockSize, Duration.ofSeconds(1), remapAttempts,
                Duration.ofMillis(10));
    }

    @Test
    void eachContainerModeRegistersItsKindAndIsSpelledAsInTheConfiguration() {
        assertEquals(Optional.of(DiscardManager.HolderKind.UNCOORDINATED_DISABLED), DiscardMode.INHIBIT.holderKind());
        assertEquals(Optional.of(DiscardManager.HolderKind.COORDINATED_REQUIRED),
                DiscardMode.COORDINATED.holderKind());
        assertEquals(Optional.empty(), DiscardMode.ON_DEMAND.holderKind(), "a mediated device never registers");
        assertEquals(List.of("inhibit", "coordinated", "on-demand"), List.of(DiscardMode.values()).stream()
                .map(DiscardMode::configName).toList());
        assertEquals(Optional.of(DiscardMode.ON_DEMAND), DiscardMode.of("on-demand"));
        assertEquals(Optional.of(DiscardMode.COORDINATED), DiscardMode.of("Coordinated"), "any case");
        assertEquals(Optional.of(DiscardMode.INHIBIT), DiscardMode.of("INHIBIT"));
        assertEquals(Optional.empty(), DiscardMode.of("on_demand"));
        assertEquals(Optional.empty(), DiscardMode.of(""));
    }

    @Test
    void disablingHoldersAreTheUncoordinatedOnesAndTheCoordinatedOnesThatFellBack() {
        DiscardState.Holder inhibit = new DiscardState.Holder("g-inhibit", DiscardManager.HolderKind
                .UNCOORDINATED_DISABLED, false);
        DiscardState.Holder stopped = new DiscardState.Holder("g-stopped", DiscardManager.HolderKind
                .UNCOORDINATED_DISABLED, true);
        DiscardState.Holder fellBack = new DiscardState.Holder("g-fell-back", DiscardManager.HolderKind
                .COORDINATED_REQUIRED, true);
        DiscardState.Holder coordinated = new DiscardState.Holder("g-coordinated", DiscardManager.HolderKind
                .COORDINATED_REQUIRED, false);
        DiscardState state = new DiscardState("m", 2, 2, List.of(inhibit, stopped, fellBack, coordinated), 4096, false,
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0, List.of(new DiscardState.Fallback("g-fell-back", "why")));
        assertEquals(List.of("g-inhibit", "g-stopped (stopped, draining)", "g-fell-back (stopped, draining)"),
                state.disablingHolders());
        assertEquals(List.of("g-inhibit", "g-stopped (stopped, draining)", "g-fell-back (stopped, draining)",
                "g-coordinated"), state.holderNames());
        assertEquals("", state.lastReportSkipReason(), "a state without reports has no skip reason");
        assertEquals(0, state.reportsGranted() + state.reportsSkipped() + state.reportedBytesDiscarded()
                + state.reportedBytesSkipped());
    }
}
