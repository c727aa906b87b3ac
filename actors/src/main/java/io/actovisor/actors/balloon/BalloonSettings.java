package io.actovisor.actors.balloon;

import com.typesafe.config.Config;
import java.time.Duration;

/**
 * The host side of a balloon, read from {@code actovisor.balloon} (see reference.conf).
 *
 * @param unsafeIgnoreInhibitor discard even while VFIO groups hold inhibitors. Devices that pinned the discarded
 *                              pages then read stale memory: only for reproducing that bug
 * @param drainTimeout          how long the balloon waits, after an inhibiting group stopped, for its container to
 *                              confirm the group's pins are gone before asking again
 */
public record BalloonSettings(boolean unsafeIgnoreInhibitor, Duration drainTimeout) {
    /** The safe defaults: inhibitors honoured, 10 s drain timeout. */
    public static final BalloonSettings DEFAULT = new BalloonSettings(false, Duration.ofSeconds(10));

    /** Settings from the {@code actovisor.balloon} subtree of {@code config}. */
    public static BalloonSettings create(Config config) {
        Config c = config.getConfig("actovisor.balloon");
        return new BalloonSettings(c.getBoolean("unsafe-ignore-inhibitor"), c.getDuration("drain-timeout"));
    }

    public BalloonSettings withUnsafeIgnoreInhibitor(boolean unsafe) {
        return new BalloonSettings(unsafe, drainTimeout);
    }
}
