package io.actovisor.cluster;

import io.actovisor.actors.vm.VmActor;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;

/**
 * The host agent of one node (one per JVM): it watches the VM actors that run in this JVM (each VM entity
 * registers its {@link VmActor} when it has started), reads their memory through {@link VmMemoryState}, and
 * publishes the node's {@link NodeReport} in Distributed Data every report interval. Its list of live VMs is what
 * the API's {@code GET /cluster/local} answers: the VM actors alive in this JVM, not sharding's bookkeeping.
 */
public final class NodeAgent extends AbstractBehavior<NodeAgent.Command> {

    /** What the agent accepts (local messages only). */
    public sealed interface Command {
    }

    /** A VM entity's VM has started here. */
    public record VmStarted(String id, ActorRef<VmActor.Command> vm) implements Command {
    }

    /** Who set a VM's balloon target last. */
    public record TargetSource(String id, String source) implements Command {
    }

    /** The VMs alive in this JVM, with their readings. */
    public record GetLocal(ActorRef<LocalVms> replyTo) implements Command {
    }

    /** The latest report. */
    public record GetReport(ActorRef<NodeReport> replyTo) implements Command {
    }

    /** The VMs whose actors are alive in this JVM ({@code live}), and their lines of the latest report. */
    public record LocalVms(String node, List<String> live, List<NodeReport.VmReport> vms) {
    }

    private record VmStopped(String id, ActorRef<VmActor.Command> vm) implements Command {
    }

    private enum Tick implements Command {
        INSTANCE
    }

    private record Reported(NodeReport report) implements Command {
    }

    private final ClusterSettings settings;
    private final ClusterData data;
    private final String address;
    private final Map<String, ActorRef<VmActor.Command>> live = new LinkedHashMap<>();
    private final Map<String, String> targetSources = new LinkedHashMap<>();
    private NodeReport last;

    private NodeAgent(ActorContext<Command> context, ClusterSettings settings, ClusterData data, String address) {
        super(context);
        this.settings = settings;
        this.data = data;
        this.address = address;
        this.last = new NodeReport(address, settings.capacityBytes(), settings.thresholdBytes(), 0, 0, 0, 0, 0, 0,
                System.currentTimeMillis(), List.of());
    }

    public static Behavior<Command> create(ClusterSettings settings, ClusterData data, String address) {
        return Behaviors.setup(context -> Behaviors.withTimers(timers -> {
            timers.startTimerWithFixedDelay(Tick.INSTANCE, settings.reportInterval());
            context.getSelf().tell(Tick.INSTANCE);
            return new NodeAgent(context, settings, data, address);
        }));
    }

    @Override
    public Receive<Command> createReceive() {
        return newReceiveBuilder()
                .onMessage(VmStarted.class, this::onVmStarted)
                .onMessage(VmStopped.class, this::onVmStopped)
                .onMessage(TargetSource.class, this::onTargetSource)
                .onMessage(GetLocal.class, this::onGetLocal)
                .onMessage(GetReport.class, get -> {
                    get.replyTo().tell(last);
                    return this;
                })
                .onMessageEquals(Tick.INSTANCE, this::onTick)
                .onMessage(Reported.class, this::onReported)
                .build();
    }

    private Behavior<Command> onVmStarted(VmStarted started) {
        live.put(started.id(), started.vm());
        getContext().watchWith(started.vm(), new VmStopped(started.id(), started.vm()));
        return this;
    }

    private Behavior<Command> onVmStopped(VmStopped stopped) {
        live.remove(stopped.id(), stopped.vm());
        if (!live.containsKey(stopped.id())) {
            targetSources.remove(stopped.id());
        }
        return this;
    }

    private Behavior<Command> onTargetSource(TargetSource source) {
        targetSources.put(source.id(), source.source());
        return this;
    }

    /** Answered at once: the VM actors alive now, with their lines of the latest report. */
    private Behavior<Command> onGetLocal(GetLocal get) {
        get.replyTo().tell(new LocalVms(address, List.copyOf(live.keySet()), last.vms()));
        return this;
    }

    private Behavior<Command> onTick() {
        getContext().pipeToSelf(readAll(), (vms, failure) -> {
            List<NodeReport.VmReport> list = vms != null ? vms : List.of();
            long committed = 0;
            long pinned = 0;
            long coordinated = 0;
            long balloonable = 0;
            long actual = 0;
            long resident = 0;
            for (NodeReport.VmReport vm : list) {
                committed += vm.ramBytes();
                pinned += vm.pinnedBytes();
                coordinated += vm.coordinatedReclaimableBytes();
                balloonable += vm.balloonableBytes();
                actual += vm.actualBytes();
                resident += vm.residentBytes();
            }
            return new Reported(new NodeReport(address, settings.capacityBytes(), settings.thresholdBytes(),
                    committed, pinned, coordinated, balloonable, actual, resident, System.currentTimeMillis(), list));
        });
        return this;
    }

    private Behavior<Command> onReported(Reported reported) {
        last = reported.report();
        data.putNode(last).whenComplete((ok, failure) -> {
            if (failure != null) {
                getContext().getSystem().log().warn("cannot publish the node report: {}", failure.getMessage());
            }
        });
        return this;
    }

    /** Read every live VM; a VM that does not answer in time is left out of this reading. */
    private CompletionStage<List<NodeReport.VmReport>> readAll() {
        List<CompletableFuture<NodeReport.VmReport>> readings = new ArrayList<>();
        for (Map.Entry<String, ActorRef<VmActor.Command>> e : live.entrySet()) {
            String id = e.getKey();
            String source = targetSources.getOrDefault(id, "none");
            readings.add(VmMemoryState.read(e.getValue(), settings.askTimeout(), getContext().getSystem().scheduler())
                    .thenApply(r -> new NodeReport.VmReport(id, r.state(), r.ramBytes(), r.pinnedBytes(),
                            r.coordinatedReclaimableBytes(), r.balloonableBytes(), r.actualBytes(), r.targetBytes(),
                            source, r.residentBytes()))
                    .toCompletableFuture()
                    .exceptionally(failure -> null));
        }
        return CompletableFuture.allOf(readings.toArray(CompletableFuture[]::new)).thenApply(v -> readings.stream()
                .map(CompletableFuture::join).filter(r -> r != null)
                .sorted(Comparator.comparing(NodeReport.VmReport::id)).toList());
    }
}
