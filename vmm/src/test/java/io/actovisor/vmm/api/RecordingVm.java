package io.actovisor.vmm.api;

import io.actovisor.actors.discard.DiscardManager;
import io.actovisor.actors.discard.DiscardState;
import io.actovisor.vmm.api.model.Action;
import io.actovisor.vmm.api.model.Balloon;
import io.actovisor.vmm.api.model.BalloonConfig;
import io.actovisor.vmm.api.model.BalloonStatistics;
import io.actovisor.vmm.api.model.InstanceInfo;
import io.actovisor.vmm.api.model.MachineConfig;
import io.actovisor.vmm.api.model.VfioState;
import io.actovisor.vmm.api.model.VmConfig;
import io.actovisor.vmm.api.model.VmInfo;
import io.actovisor.vmm.api.model.VmStateUpdate;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import org.apache.pekko.pattern.AskTimeoutException;

/**
 * A {@link VmManagement} that records the calls reaching it and answers with the API's records like a VM with
 * 64 MiB of RAM, 2 vCPUs, containers "c0" and "c\"1" and one group "7"; {@code timeOut} makes it fail like an
 * ask that timed out.
 */
public final class RecordingVm implements VmManagement {
    public final List<String> calls = Collections.synchronizedList(new ArrayList<>());
    volatile long target;
    volatile boolean attached;
    volatile boolean timeOut;
    /** Answer like a VM without a balloon device. */
    public volatile boolean noBalloon;
    volatile String state = "Running";

    private <T> CompletionStage<T> done(String call, T value) {
        calls.add(call);
        if (timeOut) {
            return CompletableFuture.failedFuture(new AskTimeoutException("Ask timed out on "
                    + "[Actor[pekko://actovisor/user/vm#1234]] after [10000 ms]"));
        }
        return CompletableFuture.completedFuture(value);
    }

    @Override
    public CompletionStage<InstanceInfo> instance() {
        return done("instance", new InstanceInfo("actovisor", "test", state, "0.1.0-test"));
    }

    @Override
    public CompletionStage<VmInfo> vm() {
        return done("vm", new VmInfo("test", state, 2, 64, 1234, GUEST, 3));
    }

    @Override
    public CompletionStage<Void> setState(VmStateUpdate.State s) {
        state = s == VmStateUpdate.State.Paused ? "Paused" : "Running";
        return done("state " + s, null);
    }

    @Override
    public VmConfig config() {
        return new VmConfig("test", new MachineConfig(2, 64, false, false), new BalloonConfig(0, true, 1),
                "workload", List.of(new VmConfig.Container("c0", "model", "inhibit", List.of("7"))));
    }

    @Override
    public CompletionStage<Void> action(Action.Type action) {
        if (action == Action.Type.SendCtrlAltDel) {
            calls.add("action " + action);
            return CompletableFuture.failedFuture(ApiException.badRequest("SendCtrlAltDel: no keyboard controller"));
        }
        return done("action " + action, null);
    }

    private Balloon balloonNow() {
        return new Balloon(target, true, 1, target << 20, 0, attached ? 1 : 0, attached ? List.of("group-7")
                : List.of(), 0, 0, 0, 0, false);
    }

    @Override
    public CompletionStage<Balloon> balloon() {
        if (noBalloon) {
            return CompletableFuture.failedFuture(ApiException.badRequest("this VM has no balloon device"));
        }
        return done("balloon", balloonNow());
    }

    @Override
    public CompletionStage<Void> setBalloonTarget(long amountMib) {
        if (amountMib > 64) {
            calls.add("target " + amountMib);
            return CompletableFuture.failedFuture(ApiException.badRequest(
                    "field 'amount_mib' value " + amountMib + " exceeds guest memory (64 MiB)"));
        }
        target = amountMib;
        return done("target " + amountMib, null);
    }

    @Override
    public CompletionStage<Void> setStatsPollingInterval(long seconds) {
        return done("stats interval " + seconds, null);
    }

    @Override
    public CompletionStage<BalloonStatistics> balloonStatistics() {
        return done("statistics", new BalloonStatistics(target * 256, target * 256, target, target, null, null,
                null, null, 1L << 20, 64L << 20, null, null, null, null, 1, 0, 1, 0));
    }

    private VfioState vfioNow() {
        return new VfioState(List.of(
                new VfioState.Container("c0", "model", attached ? List.of("7") : List.of(),
                        List.of(new VfioState.Mapping("0x0", 64L << 20, "READ_WRITE")), attached ? 64L << 20 : 0),
                new VfioState.Container("c\"1", "model", List.of(), List.of(), 0)),
                List.of(new VfioState.Group("7", attached ? "c0" : null, attached, false, attached)),
                attached ? List.of("group-7") : List.of());
    }

    /** The guest a recorded VM runs. */
    static final VmInfo.Guest GUEST = new VmInfo.Guest("firmware", "workload", "running", null);

    @Override
    public CompletionStage<DiscardState> discard() {
        List<DiscardState.Holder> holders = attached
                ? List.of(new DiscardState.Holder("vfio-group:7", DiscardManager.HolderKind.UNCOORDINATED_DISABLED,
                        false))
                : List.of();
        return done("discard", new DiscardState("test-discard", holders.size(), 0, holders, 2 << 20, true, 1, 2, 0,
                8192, 4096, 0, 0, 0, 0, 0, List.of()));
    }

    @Override
    public CompletionStage<VfioState> vfio() {
        return done("vfio", vfioNow());
    }

    @Override
    public CompletionStage<Void> attachGroup(String groupId) {
        calls.add("attach " + groupId);
        if (!groupId.equals("7")) {
            return CompletableFuture.failedFuture(ApiException.notFound("no VFIO group '" + groupId + "'"));
        }
        if (attached) {
            return CompletableFuture.failedFuture(ApiException.conflict("group 7 is already attached"));
        }
        attached = true;
        return CompletableFuture.completedFuture(null);
    }

    @Override
    public CompletionStage<Void> detachGroup(String groupId) {
        calls.add("detach " + groupId);
        if (!groupId.equals("7")) {
            return CompletableFuture.failedFuture(ApiException.notFound("no VFIO group '" + groupId + "'"));
        }
        if (!attached) {
            return CompletableFuture.failedFuture(ApiException.conflict("group 7 is not attached"));
        }
        attached = false;
        return CompletableFuture.completedFuture(null);
    }

    @Override
    public CompletionStage<VmMetrics> metrics() {
        return done("metrics", new VmMetrics(new VmInfo("test", state, 2, 64, 1234, GUEST, 3),
                Optional.of(balloonNow()), vfioNow(), List.of(
                        new VcpuCounters(0, Map.of("io", 10L, "mmio", 5L), 0),
                        new VcpuCounters(1, Map.of("io", 3L, "hlt", 1L), 2)), 4, 0));
    }
}
