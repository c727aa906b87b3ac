package io.actovisor.vmm.runtime;

import io.actovisor.actors.balloon.BalloonActor;
import io.actovisor.actors.balloon.VirtioBalloonActor;
import io.actovisor.actors.device.DeviceIo;
import io.actovisor.actors.events.ActovisorEvent;
import io.actovisor.actors.vfio.VfioContainerActor;
import io.actovisor.actors.vfio.VfioGroupActor;
import io.actovisor.actors.discard.DiscardManager;
import io.actovisor.actors.discard.DiscardState;
import io.actovisor.actors.vm.VmActor;
import io.actovisor.devices.iommu.DmaMapping;
import io.actovisor.vmm.api.ApiException;
import io.actovisor.vmm.api.VmManagement;
import io.actovisor.vmm.api.model.Action;
import io.actovisor.vmm.api.model.Balloon;
import io.actovisor.vmm.api.model.BalloonStatistics;
import io.actovisor.vmm.api.model.InstanceInfo;
import io.actovisor.vmm.api.model.VfioState;
import io.actovisor.vmm.api.model.VmConfig;
import io.actovisor.vmm.api.model.VmInfo;
import io.actovisor.vmm.api.model.VmStateUpdate;
import io.actovisor.vmm.BuildInfo;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Function;
import org.apache.pekko.Done;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.RecipientRef;
import org.apache.pekko.actor.typed.eventstream.EventStream;
import org.apache.pekko.actor.typed.javadsl.AskPattern;
import org.apache.pekko.actor.typed.javadsl.Behaviors;

/**
 * The REST API's view of one running VM, answered by asking the VM's actors. Sizes in the API are MiB where the
 * user sets them (Firecracker's {@code amount_mib}) and bytes where the VMM reports them.
 */
public final class VmRuntime implements VmManagement {
    private static final long MIB = 1L << 20;

    private final ActorSystem<?> system;
    private final ActorRef<VmActor.Command> vm;
    private final VmActor.Components components;
    private final Map<String, String> groupContainers;
    private final VmConfig config;
    private final Duration timeout;
    private final long startedNanos = System.nanoTime();
    private volatile long statsPollingIntervalS;
    private final AtomicLong commits = new AtomicLong();
    private final AtomicLong refusedCommits = new AtomicLong();

    /**
     * @param groupContainers each configured group's container, for hot attach
     * @param config          the configuration the VM runs with ({@code GET /vm/config})
     */
    public VmRuntime(ActorSystem<?> system, ActorRef<VmActor.Command> vm, VmActor.Components components,
            Map<String, String> groupContainers, VmConfig config, Duration timeout) {
        this.system = system;
        this.config = config;
        this.statsPollingIntervalS = config.balloon() == null ? 0 : config.balloon().statsPollingIntervalS();
        this.vm = vm;
        this.components = components;
        this.groupContainers = Map.copyOf(groupContainers);
        this.timeout = timeout;
        ActorRef<ActovisorEvent> counter = system.systemActorOf(Behaviors.receiveMessage(event -> {
            if (event instanceof ActovisorEvent.TopologyCommitted) {
                commits.incrementAndGet();
            } else if (event instanceof ActovisorEvent.TopologyRefused) {
                refusedCommits.incrementAndGet();
            }
            return Behaviors.same();
        }), "vm-runtime-events-" + System.identityHashCode(this), org.apache.pekko.actor.typed.Props.empty());
        system.eventStream().tell(new EventStream.Subscribe<>(ActovisorEvent.class, counter));
    }

    private <Q, R> CompletionStage<R> ask(RecipientRef<Q> to, Function<ActorRef<R>, Q> message) {
        return AskPattern.ask(to, message::apply, timeout, system.scheduler());
    }

    /** Firecracker's state names: {@code Not started}, {@code Running}, {@code Paused}; then actovisor's own. */
    static String stateName(VmActor.State state) {
        return switch (state) {
            case CREATED, STARTING -> "Not started";
            case RUNNING -> "Running";
            case PAUSED -> "Paused";
            case STOPPING -> "Stopping";
        };
    }

    @Override
    public CompletionStage<InstanceInfo> instance() {
        return this.<VmActor.Command, VmActor.VmInfo>ask(vm, VmActor.GetInfo::new).thenApply(info ->
                new InstanceInfo("actovisor", info.name(), stateName(info.state()), BuildInfo.version()));
    }

    @Override
    public CompletionStage<VmInfo> vm() {
        CompletionStage<VmActor.GuestInfo> guest = this.<VmActor.Command, VmActor.GuestInfo>ask(vm,
                VmActor.GetGuest::new);
        return this.<VmActor.Command, VmActor.VmInfo>ask(vm, VmActor.GetInfo::new).thenCombine(guest,
                (info, g) -> new VmInfo(info.name(), stateName(info.state()), components.vcpus().size(),
                        info.ramBytes() / MIB, (System.nanoTime() - startedNanos) / 1_000_000,
                        new VmInfo.Guest(g.kind(), g.program(), g.state().name().toLowerCase(java.util.Locale.ROOT),
                                g.failure().orElse(null)), info.regions()));
    }

    @Override
    public CompletionStage<DiscardState> discard() {
        return this.<DiscardManager.Command, DiscardState>ask(components.discardManager(), DiscardManager.GetState::new);
    }

    @Override
    public CompletionStage<Void> setState(VmStateUpdate.State state) {
        CompletionStage<VmActor.ActionResult> result = switch (state) {
            case Paused -> ask(vm, VmActor.Pause::new);
            case Resumed -> ask(vm, VmActor.Resume::new);
        };
        return result.thenApply(VmRuntime::refusedIsConflict);
    }

    @Override
    public VmConfig config() {
        return config;
    }

    @Override
    public CompletionStage<Void> action(Action.Type action) {
        return switch (action) {
            case Shutdown -> this.<VmActor.Command, VmActor.ActionResult>ask(vm, VmActor.Shutdown::new)
                    .thenApply(VmRuntime::refusedIsConflict);
            case SendCtrlAltDel -> CompletableFuture.failedFuture(ApiException.badRequest("SendCtrlAltDel: this "
                    + "VM has no keyboard controller (i8042) to send Ctrl+Alt+Del to; use {\"action_type\": "
                    + "\"Shutdown\"}"));
            case FlushMetrics -> CompletableFuture.failedFuture(new IllegalStateException(
                    "FlushMetrics is answered by the API server"));
        };
    }

    private static Void refusedIsConflict(VmActor.ActionResult r) {
        if (r instanceof VmActor.ActionRefused refused) {
            throw ApiException.conflict(refused.reason());
        }
        return null;
    }

    private ActorRef<BalloonActor.Command> balloonRef() {
        return components.balloon().orElseThrow(() -> ApiException.badRequest("this VM has no balloon device "
                + "(actovisor.vm.balloon.enabled = false)"));
    }

    /** The VM's virtio-balloon device, by its role; fails with a bad request when the VM has none. */
    private CompletionStage<ActorRef<DeviceIo.Command>> balloonDevice() {
        CompletionStage<VmActor.BalloonDevice> found = ask(vm, VmActor.GetBalloonDevice::new);
        return found.thenApply(d -> d.device().orElseThrow(() -> ApiException.badRequest(
                "this VM has no balloon device (actovisor.vm.balloon.enabled = false)")));
    }

    @Override
    public CompletionStage<Balloon> balloon() {
        return balloonStatus().thenApply(this::balloonModel);
    }

    private CompletionStage<BalloonActor.BalloonStatus> balloonStatus() {
        try {
            return ask(balloonRef(), BalloonActor.GetStatus::new);
        } catch (ApiException e) {
            return CompletableFuture.failedFuture(e);
        }
    }

    private Balloon balloonModel(BalloonActor.BalloonStatus s) {
        return new Balloon(s.targetBytes() / MIB, config.balloon() != null && config.balloon().deflateOnOom(),
                statsPollingIntervalS, s.targetBytes(), s.actualBytes(), s.inhibitors(), s.holders(), s.discards(),
                s.pagesDiscarded(), s.skippedDiscards(), s.pagesSkipped(), s.unsafeIgnoreInhibitor());
    }

    @Override
    public CompletionStage<Void> setBalloonTarget(long amountMib) {
        ActorRef<BalloonActor.Command> balloon;
        try {
            balloon = balloonRef();
        } catch (ApiException e) {
            return CompletableFuture.failedFuture(e);
        }
        if (amountMib < 0 || amountMib > Long.MAX_VALUE / MIB) {
            return CompletableFuture.failedFuture(ApiException.badRequest("field 'amount_mib' value " + amountMib
                    + " is out of range"));
        }
        CompletionStage<BalloonActor.TargetResult> set = ask(balloon,
                replyTo -> new BalloonActor.SetTarget(amountMib * MIB, replyTo));
        return set.thenApply(result -> {
            if (result instanceof BalloonActor.TargetRefused refused) {
                throw ApiException.badRequest("field 'amount_mib' value " + amountMib + ": " + refused.reason());
            }
            return null;
        });
    }

    @Override
    public CompletionStage<Void> setStatsPollingInterval(long seconds) {
        CompletionStage<Done> set = balloonDevice().thenCompose(device -> ask(device,
                replyTo -> new VirtioBalloonActor.SetStatsInterval(Duration.ofSeconds(seconds), replyTo)));
        return set.thenApply(done -> {
            statsPollingIntervalS = seconds;
            return null;
        });
    }

    @Override
    public CompletionStage<BalloonStatistics> balloonStatistics() {
        CompletionStage<VirtioBalloonActor.Statistics> stats = balloonDevice().thenCompose(device -> ask(device,
                VirtioBalloonActor.GetStatistics::new));
        return stats.thenApply(s -> {
            Map<String, Long> v = s.latest().map(io.actovisor.devices.balloon.BalloonStatistics::values)
                    .orElse(Map.of());
            long pagesPerMib = MIB / 4096;
            return new BalloonStatistics(s.targetPages(), s.actualPages(), s.targetPages() / pagesPerMib,
                    s.actualPages() / pagesPerMib, v.get("swap_in"), v.get("swap_out"), v.get("major_faults"),
                    v.get("minor_faults"), v.get("free_memory"), v.get("total_memory"), v.get("available_memory"),
                    v.get("disk_caches"), v.get("hugetlb_allocations"), v.get("hugetlb_failures"), s.inflateCount(),
                    s.deflateCount(), s.statsUpdates(), s.eventFails());
        });
    }

    @Override
    public CompletionStage<VfioState> vfio() {
        List<CompletableFuture<VfioContainerActor.State>> containers = new ArrayList<>();
        components.containers().values().forEach(c -> containers.add(
                this.<VfioContainerActor.Command, VfioContainerActor.State>ask(c, VfioContainerActor.GetState::new)
                        .toCompletableFuture()));
        List<CompletableFuture<VfioGroupActor.State>> groups = new ArrayList<>();
        components.groups().values().forEach(g -> groups.add(
                this.<VfioGroupActor.Command, VfioGroupActor.State>ask(g, VfioGroupActor.GetState::new)
                        .toCompletableFuture()));
        CompletableFuture<BalloonActor.BalloonStatus> balloon = components.balloon().isPresent()
                ? balloonStatus().toCompletableFuture() : CompletableFuture.completedFuture(null);
        List<CompletableFuture<?>> all = new ArrayList<>(containers);
        all.addAll(groups);
        all.add(balloon);
        return CompletableFuture.allOf(all.toArray(CompletableFuture[]::new)).thenApply(done -> {
            List<VfioState.Container> cs = new ArrayList<>();
            for (CompletableFuture<VfioContainerActor.State> f : containers) {
                VfioContainerActor.State s = f.join();
                cs.add(new VfioState.Container(s.name(), s.backend(), s.groups(),
                        s.mappings().stream().map(VmRuntime::mapping).toList(), s.pinnedBytes()));
            }
            cs.sort(Comparator.comparing(VfioState.Container::name));
            List<VfioState.Group> gs = new ArrayList<>();
            for (CompletableFuture<VfioGroupActor.State> f : groups) {
                VfioGroupActor.State s = f.join();
                gs.add(new VfioState.Group(s.groupId(), s.container().orElse(null), s.container().isPresent(),
                        s.balloonCompatible(), s.inhibiting()));
            }
            gs.sort(Comparator.comparing(VfioState.Group::id));
            BalloonActor.BalloonStatus b = balloon.join();
            return new VfioState(cs, gs, b == null ? List.of() : b.holders());
        });
    }

    private static VfioState.Mapping mapping(DmaMapping m) {
        return new VfioState.Mapping("0x" + Long.toHexString(m.iova().base()), m.iova().size(),
                m.permissions().name());
    }

    private ActorRef<VfioGroupActor.Command> group(String id) {
        ActorRef<VfioGroupActor.Command> group = components.groups().get(id);
        if (group == null) {
            throw ApiException.notFound("VFIO group '" + id + "' is not configured for this VM (configured: "
                    + new java.util.TreeSet<>(components.groups().keySet()) + ")");
        }
        return group;
    }

    @Override
    public CompletionStage<Void> attachGroup(String groupId) {
        ActorRef<VfioGroupActor.Command> group;
        try {
            group = group(groupId);
        } catch (ApiException e) {
            return CompletableFuture.failedFuture(e);
        }
        String containerName = groupContainers.get(groupId);
        ActorRef<VfioContainerActor.Command> container = components.containers().get(containerName);
        CompletionStage<VfioGroupActor.AttachResult> attach = ask(group,
                replyTo -> new VfioGroupActor.Attach(container, containerName, replyTo));
        return attach.thenApply(result -> {
            if (result instanceof VfioGroupActor.AttachFailed failed) {
                throw ApiException.conflict(failed.reason());
            }
            return null;
        });
    }

    @Override
    public CompletionStage<Void> detachGroup(String groupId) {
        ActorRef<VfioGroupActor.Command> group;
        try {
            group = group(groupId);
        } catch (ApiException e) {
            return CompletableFuture.failedFuture(e);
        }
        CompletionStage<VfioGroupActor.DetachResult> detach = ask(group, VfioGroupActor.Detach::new);
        return detach.thenApply(result -> {
            if (result instanceof VfioGroupActor.DetachFailed failed) {
                throw ApiException.conflict(failed.reason());
            }
            return null;
        });
    }

    @Override
    public CompletionStage<VmMetrics> metrics() {
        // vCPU counters are read directly: a vCPU's thread is inside the guest and cannot answer a message.
        List<VcpuCounters> vcpus = components.vcpus().stream().map(v -> new VcpuCounters(v.id(),
                v.counters().snapshot(), v.counters().unclaimed())).toList();
        CompletableFuture<VmInfo> info = vm().toCompletableFuture();
        CompletableFuture<VfioState> vfio = vfio().toCompletableFuture();
        CompletableFuture<Optional<Balloon>> balloon = components.balloon().isPresent()
                ? balloon().thenApply(Optional::of).toCompletableFuture()
                : CompletableFuture.completedFuture(Optional.empty());
        // A manager that does not answer leaves its families out; the rest of the scrape still works.
        CompletableFuture<Optional<DiscardState>> discard = discard().thenApply(Optional::of)
                .exceptionally(failure -> Optional.empty()).toCompletableFuture();
        return CompletableFuture.allOf(info, vfio, balloon, discard).thenApply(done -> new VmMetrics(info.join(),
                balloon.join(), vfio.join(), vcpus, commits.get(), refusedCommits.get(), discard.join()));
    }
}
