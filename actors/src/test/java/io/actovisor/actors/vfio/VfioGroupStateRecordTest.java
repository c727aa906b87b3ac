package io.actovisor.actors.vfio;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.actovisor.actors.discard.DiscardMode;
import java.util.Optional;
import org.junit.jupiter.api.Test;

/** A group's reported state calls it balloon-compatible exactly when its device pins on demand. */
class VfioGroupStateRecordTest {
    @Test
    void onlyAnOnDemandGroupIsBalloonCompatible() {
        for (DiscardMode mode : DiscardMode.values()) {
            VfioGroupActor.State state = new VfioGroupActor.State("g0", mode, Optional.of("c0"),
                    mode != DiscardMode.ON_DEMAND);
            assertEquals(mode == DiscardMode.ON_DEMAND, state.balloonCompatible(), mode.toString());
        }
    }
}
