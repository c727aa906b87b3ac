package io.actovisor.vmm.api;

import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletionStage;

/**
 * What the REST API can ask of a running VM. The VMM implements it over the actor tree; every method answers
 * asynchronously and fails its stage with an {@link ApiException} carrying the HTTP status for the client.
 */
public interface VmManagement {
    /** {@code GET /vm}: name, state, vCPUs, memory. */
    CompletionStage<Map<String, Object>> vm();

    /** {@code PUT /actions}. */
    CompletionStage<Void> action(Action action);

    /** {@code GET /balloon}. */
    CompletionStage<Map<String, Object>> balloon();

    /** {@code PATCH /balloon}: a new target in MiB; {@link ApiException} 400 when it exceeds guest memory. */
    CompletionStage<Map<String, Object>> setBalloonTarget(long amountMib);

    /** {@code GET /balloon/statistics}. */
    CompletionStage<Map<String, Object>> balloonStatistics();

    /** {@code GET /vfio}: containers, groups, mappings, pinned bytes, inhibitor holders. */
    CompletionStage<Map<String, Object>> vfio();

    /** {@code PUT /vfio/groups/{id}}: hot-attach a configured group; 404 unknown, 409 already attached. */
    CompletionStage<Map<String, Object>> attachGroup(String groupId);

    /** {@code DELETE /vfio/groups/{id}}: hot-detach; 404 unknown, 409 not attached. */
    CompletionStage<Map<String, Object>> detachGroup(String groupId);

    /** {@code GET /metrics}: samples by metric name (Prometheus text is rendered by the API). */
    CompletionStage<List<Metric>> metrics();

    /** The actions of {@code PUT /actions}, spelled as Firecracker spells them. */
    enum Action {
        Pause, Resume, Shutdown
    }

    /**
     * One Prometheus sample.
     *
     * @param name   metric name, e.g. {@code actovisor_balloon_target_bytes}
     * @param type   {@code gauge} or {@code counter}
     * @param help   one line of help
     * @param labels label names to values (may be empty)
     * @param value  the sample
     */
    record Metric(String name, String type, String help, Map<String, String> labels, double value) {
    }
}
