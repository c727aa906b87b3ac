package io.actovisor.actors.balloon;

import com.typesafe.config.Config;
import java.time.Duration;

/**
 * The host side of a balloon. {@link #create} reads {@code actovisor.balloon} (see reference.conf): the drain
 * timeout. Whether to ignore the inhibitors belongs to each VM's definition
 * ({@code actovisor.vm.balloon.unsafe-ignore-inhibitor}), which sets it with {@link #withUnsafeIgnoreInhibitor}.
 *
 * @param unsafeIgnoreInhibitor discard even while VFIO groups hold inhibitors. Devices that pinned the discarded
 *                              pages then read stale memory: only for reproducing that bug
 * @param drainTimeout          how long the balloon waits, after an inhibiting group stopped, for its container to
 *                              confirm the group's pins are gone before asking again
 */
public record BalloonSettings(boolean unsafeIgnoreInhibitor, Duration drainTimeout) {
    /** The safe defaults: inhibitors honoured, 10 s drain timeout. */
    public static final BalloonSettings DEFAULT = new BalloonSettings(false, Duration.ofSeconds(10));

    /** Settings from the {@code actovisor.balloon} subtree of {@code config}; inhibitors honoured. */
    public static BalloonSettings create(Config config) {
        Config c = config.getConfig("actovisor.balloon");
        return new BalloonSettings(false, c.getDuration("drain-timeout"));
    }

    public BalloonSettings withUnsafeIgnoreInhibitor(boolean unsafe) {
        return new BalloonSettings(unsafe, drainTimeout);
    }
}
