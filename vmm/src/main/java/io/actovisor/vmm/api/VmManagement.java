package io.actovisor.vmm.api;

import io.actovisor.actors.discard.DiscardState;
import io.actovisor.vmm.api.model.Action;
import io.actovisor.vmm.api.model.Balloon;
import io.actovisor.vmm.api.model.BalloonStatistics;
import io.actovisor.vmm.api.model.InstanceInfo;
import io.actovisor.vmm.api.model.MachineConfig;
import io.actovisor.vmm.api.model.VfioState;
import io.actovisor.vmm.api.model.VmConfig;
import io.actovisor.vmm.api.model.VmInfo;
import io.actovisor.vmm.api.model.VmStateUpdate;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletionStage;

/**
 * What the REST API can ask of a running VM. The VMM implements it over the actor tree; every method answers
 * asynchronously and fails its stage with an {@link ApiException} carrying the HTTP status for the client.
 */
public interface VmManagement {
    /** {@code GET /}. */
    CompletionStage<InstanceInfo> instance();

    /** {@code GET /vm}. */
    CompletionStage<VmInfo> vm();

    /** {@code PATCH /vm}: pause or resume; 409 when the VM's state does not allow it. */
    CompletionStage<Void> setState(VmStateUpdate.State state);

    /** {@code GET /vm/config}. */
    VmConfig config();

    /** {@code GET /machine-config}. */
    default MachineConfig machineConfig() {
        return config().machineConfig();
    }

    /** {@code PUT /actions} with {@code SendCtrlAltDel} or {@code Shutdown} ({@code FlushMetrics} is the API's). */
    CompletionStage<Void> action(Action.Type action);

    /** {@code GET /balloon}; 400 when the VM has no balloon. */
    CompletionStage<Balloon> balloon();

    /** {@code PATCH /balloon}: a new target in MiB; 400 when it exceeds guest memory or there is no balloon. */
    CompletionStage<Void> setBalloonTarget(long amountMib);

    /** {@code PATCH /balloon/statistics}: a new polling interval in seconds; 400 without a balloon. */
    CompletionStage<Void> setStatsPollingInterval(long seconds);

    /** {@code GET /balloon/statistics}; 400 without a balloon. */
    CompletionStage<BalloonStatistics> balloonStatistics();

    /** {@code GET /vfio}. */
    CompletionStage<VfioState> vfio();

    /** {@code GET /discard}: the discard manager's state (holders by kind, frames held, bytes discarded, fallbacks). */
    CompletionStage<DiscardState> discard();

    /** {@code PUT /vfio/groups/{id}}: hot-attach a configured group; 404 unknown, 409 already attached. */
    CompletionStage<Void> attachGroup(String groupId);

    /** {@code DELETE /vfio/groups/{id}}: hot-detach; 404 unknown, 409 not attached. */
    CompletionStage<Void> detachGroup(String groupId);

    /** {@code GET /metrics}: the VM's numbers; the API renders them with the JVM's in Prometheus text. */
    CompletionStage<VmMetrics> metrics();

    /**
     * The VM's numbers at one moment.
     *
     * @param vm             the VM
     * @param balloon        the balloon, if the VM has one
     * @param vfio           containers and groups
     * @param vcpus          each vCPU's exit counters
     * @param commits        memory topology commits applied
     * @param refusedCommits memory topology commits refused
     * @param discard        the discard manager's state, if it answered
     */
    record VmMetrics(VmInfo vm, Optional<Balloon> balloon, VfioState vfio, List<VcpuCounters> vcpus, long commits,
            long refusedCommits, Optional<io.actovisor.actors.discard.DiscardState> discard) {
        public VmMetrics {
            vcpus = List.copyOf(vcpus);
        }

        /** The numbers without the discard manager's state. */
        public VmMetrics(VmInfo vm, Optional<Balloon> balloon, VfioState vfio, List<VcpuCounters> vcpus,
                long commits, long refusedCommits) {
            this(vm, balloon, vfio, vcpus, commits, refusedCommits, Optional.empty());
        }
    }

    /**
     * One vCPU's exits by reason, and the port and MMIO accesses no device claimed.
     *
     * @param id        the vCPU's index
     * @param exits     exit counts by reason
     * @param unclaimed unclaimed accesses
     */
    record VcpuCounters(int id, Map<String, Long> exits, long unclaimed) {
        public VcpuCounters {
            exits = Map.copyOf(exits);
        }
    }
}
