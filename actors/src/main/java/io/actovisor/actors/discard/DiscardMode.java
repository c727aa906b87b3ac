package io.actovisor.actors.discard;

import java.util.Arrays;
import java.util.Locale;
import java.util.Optional;

/**
 * How a VFIO container's pins relate to discards of guest RAM (a property of the container: all its groups share
 * one IOMMU context).
 */
public enum DiscardMode {
    /** The container pins all guest RAM and no discard may run while any of its groups is attached (the default). */
    INHIBIT("inhibit"),
    /** The container maps guest RAM in blocks and unmaps a block on request before it is discarded. */
    COORDINATED("coordinated"),
    /** The device pins on demand (a mediated device) and never disables discards. */
    ON_DEMAND("on-demand");

    private final String configName;

    DiscardMode(String configName) {
        this.configName = configName;
    }

    /** The name used in configuration and status ({@code inhibit}, {@code coordinated}, {@code on-demand}). */
    public String configName() {
        return configName;
    }

    /** The holder kind a group of a container in this mode registers as, if any. */
    public Optional<DiscardManager.HolderKind> holderKind() {
        return switch (this) {
            case INHIBIT -> Optional.of(DiscardManager.HolderKind.UNCOORDINATED_DISABLED);
            case COORDINATED -> Optional.of(DiscardManager.HolderKind.COORDINATED_REQUIRED);
            case ON_DEMAND -> Optional.empty();
        };
    }

    /** The mode called {@code name} in configuration, if any. */
    public static Optional<DiscardMode> of(String name) {
        return Arrays.stream(values()).filter(m -> m.configName.equals(name.toLowerCase(Locale.ROOT))).findFirst();
    }
}
