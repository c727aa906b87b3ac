package io.actovisor.vmm.api.model;

/**
 * {@code PATCH /vm}: Firecracker's {@code {"state": "Paused"|"Resumed"}}.
 *
 * @param state the state to move to
 */
public record VmStateUpdate(State state) {
    /** The states a client can ask for. */
    public enum State {
        Paused, Resumed
    }
}
