package io.actovisor.cluster;

import com.typesafe.config.Config;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Locale;

/**
 * The settings of one cluster node, read from {@code actovisor.cluster} (see this module's reference.conf).
 *
 * @param capacityBytes         host memory this node offers to guests
 * @param threshold             fraction of the capacity; committed memory above it makes the controller inflate
 * @param overcommitRatio       balloonable VMs may be admitted until committed memory reaches capacity x this
 * @param balloonFloor          fraction of a VM's RAM the controller never takes away
 * @param guests                {@code definition}: VMs run the guest their definition's {@code guest.kind} picks
 *                              ({@code auto}: the firmware guest on KVM, else the scripted guest); {@code none}: the
 *                              VM tree (memory, VFIO, balloon) without a guest
 * @param dataDir               this node's own directory: remember-entities and definition LMDB stores, API token
 */
public record ClusterSettings(long capacityBytes, double threshold, double overcommitRatio, double balloonFloor,
        Duration controllerInterval, Duration reportInterval, Duration askTimeout, Duration startTimeout,
        String guests, String apiHost, int apiPort, Path dataDir, Path tokenFile) {

    /** Settings from {@code config}'s {@code actovisor.cluster} subtree. */
    public static ClusterSettings create(Config config) {
        Config c = config.getConfig("actovisor.cluster");
        long capacity = c.getBytes("node.capacity");
        if (capacity == 0) {
            capacity = memTotalBytes();
        }
        double threshold = c.getDouble("controller.threshold");
        if (threshold <= 0 || threshold > 4) {
            throw new IllegalArgumentException("actovisor.cluster.controller.threshold = " + threshold
                    + ": must be a fraction of the capacity above 0");
        }
        double ratio = c.getDouble("placement.balloonable-overcommit");
        if (ratio < 1) {
            throw new IllegalArgumentException("actovisor.cluster.placement.balloonable-overcommit = " + ratio
                    + ": must be at least 1 (no overcommit)");
        }
        double floor = c.getDouble("controller.balloon-floor");
        if (floor < 0 || floor > 1) {
            throw new IllegalArgumentException("actovisor.cluster.controller.balloon-floor = " + floor
                    + ": must be a fraction between 0 and 1");
        }
        String guests = c.getString("guests").toLowerCase(Locale.ROOT);
        if (!guests.equals("definition") && !guests.equals("none")) {
            throw new IllegalArgumentException("actovisor.cluster.guests = " + guests
                    + ": must be definition (the guest each VM's guest.kind picks) or none");
        }
        Path dataDir = Path.of(c.getString("data-dir"));
        String tokenFile = c.getString("api.token-file");
        return new ClusterSettings(capacity, threshold, ratio, floor, c.getDuration("controller.interval"),
                c.getDuration("node.report-interval"), c.getDuration("ask-timeout"), c.getDuration("start-timeout"),
                guests, c.getString("api.host"), c.getInt("api.port"), dataDir,
                tokenFile.isEmpty() ? dataDir.resolve("api-token") : Path.of(tokenFile));
    }

    /** The threshold in bytes. */
    public long thresholdBytes() {
        return (long) (capacityBytes * threshold);
    }

    /** MemTotal of /proc/meminfo, in bytes. */
    static long memTotalBytes() {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/meminfo"))) {
                if (line.startsWith("MemTotal:")) {
                    return Long.parseLong(line.replaceAll("[^0-9]", "")) * 1024;
                }
            }
        } catch (IOException | NumberFormatException e) {
            throw new IllegalStateException("actovisor.cluster.node.capacity is 0 (the host's MemTotal) but "
                    + "/proc/meminfo cannot be read: " + e.getMessage() + "; set the capacity in bytes", e);
        }
        throw new IllegalStateException("actovisor.cluster.node.capacity is 0 (the host's MemTotal) but "
                + "/proc/meminfo has no MemTotal line; set the capacity in bytes");
    }
}
