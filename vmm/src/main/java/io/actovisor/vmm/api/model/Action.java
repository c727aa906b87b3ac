package io.actovisor.vmm.api.model;

/**
 * {@code PUT /actions}.
 *
 * @param actionType what to do
 */
public record Action(Type actionType) {
    /** Firecracker's {@code FlushMetrics} and {@code SendCtrlAltDel}, and actovisor's own {@code Shutdown}. */
    public enum Type {
        FlushMetrics, SendCtrlAltDel, Shutdown
    }
}
