package io.actovisor.cluster;

import io.actovisor.actors.ask.ContextAsk;
import io.actovisor.actors.balloon.BalloonActor;
import io.actovisor.actors.balloon.BalloonSettings;
import io.actovisor.actors.vm.VmActor;
import io.actovisor.actors.vm.VmTopology;
import io.actovisor.config.VmSpec;
import io.actovisor.config.VmSpecParser;
import io.actovisor.vmm.runtime.VmBuilder;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.PostStop;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.AskPattern;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.StashBuffer;
import org.apache.pekko.cluster.sharding.typed.ClusterShardingSettings;
import org.apache.pekko.cluster.sharding.typed.ShardingEnvelope;
import org.apache.pekko.cluster.sharding.typed.ShardingMessageExtractor;
import org.apache.pekko.cluster.sharding.typed.javadsl.ClusterSharding;
import org.apache.pekko.cluster.sharding.typed.javadsl.Entity;
import org.apache.pekko.cluster.sharding.typed.javadsl.EntityTypeKey;
import org.apache.pekko.cluster.typed.Cluster;

/**
 * One VM as a Cluster Sharding entity: the entity for a VM id reads the VM's definition from Distributed Data,
 * builds the VM tree (the existing {@link VmActor}) in this JVM and starts it, and answers for it. Remember-entities
 * is on: when the node that ran the entity dies, sharding starts the entity again on a surviving node (the node
 * {@link VmAllocationStrategy} picks), which builds the VM again from the same definition.
 *
 * <p>One behaviour per state: loading (reading the definition), starting, running, stopping, gone. Commands that
 * arrive while loading or starting are stashed and answered once the VM runs or failed.
 *
 * <p>A VM that fails to start is removed (its definition too) and the entity passivates, so a definition that
 * cannot run does not restart forever. A VM that stops by itself (the guest halted, a vCPU failed) stops the
 * entity without passivation: remember-entities starts it again after the shard's restart backoff.
 */
public final class VmEntity {

    /** The entity type of VMs. */
    public static final EntityTypeKey<Command> TYPE_KEY = EntityTypeKey.create(Command.class, "vm");

    /** What a VM entity accepts. */
    public sealed interface Command extends ClusterSerializable {
    }

    /** Start the VM if it is not running; answered when it runs (200) or failed. */
    public record Ensure(ActorRef<Reply> replyTo) implements Command {
    }

    /** The VM's status. */
    public record GetStatus(ActorRef<Reply> replyTo) implements Command {
    }

    /**
     * Set the balloon's target.
     *
     * @param source {@code controller} or {@code api}: the memory controller only takes back targets it set
     */
    public record SetBalloon(long targetBytes, String source, ActorRef<Reply> replyTo) implements Command {
    }

    /** Stop the VM and remove its definition; answered when the VM tree has stopped. */
    public record Delete(ActorRef<Reply> replyTo) implements Command {
    }

    /** Sharding's stop message (hand-off, passivation): stop the VM, then the entity. Local only. */
    public enum Stop implements Command {
        INSTANCE
    }

    /**
     * The answer to every command: an HTTP-like status (200, 404, 409, 500, 503), a sentence, and the VM's status
     * when there is one.
     */
    public record Reply(String id, int status, String message, VmStatus vm) implements ClusterSerializable {
        public boolean ok() {
            return status >= 200 && status < 300;
        }
    }

    /**
     * A VM as its entity sees it, read from its own actors.
     *
     * @param residentBytes bytes of its RAM resident in host memory now (the VM actor's mincore reading)
     */
    public record VmStatus(String id, String node, String state, long ramBytes, long pinnedBytes,
            long coordinatedReclaimableBytes, long balloonableBytes, long actualBytes, long targetBytes,
            String targetSource, long residentBytes) implements ClusterSerializable {
    }

    private record Loaded(Optional<VmRecord> record, Throwable failure) implements Command {
    }

    private record StartOutcome(VmActor.StartResult result, Throwable failure) implements Command {
    }

    private record VmTerminated(ActorRef<VmActor.Command> vm) implements Command {
    }

    private record DefinitionRemoved(ActorRef<Reply> replyTo, Throwable failure) implements Command {
    }

    /** Shard id = entity id: one shard per VM, so the allocation strategy places each VM on its own. */
    static final class OneShardPerVm extends ShardingMessageExtractor<ShardingEnvelope<Command>, Command> {
        @Override
        public String entityId(ShardingEnvelope<Command> envelope) {
            return envelope.entityId();
        }

        @Override
        public String shardId(String entityId) {
            return entityId;
        }

        @Override
        public Command unwrapMessage(ShardingEnvelope<Command> envelope) {
            return envelope.message();
        }
    }

    /** Start sharding of VMs on this node. */
    public static ActorRef<ShardingEnvelope<Command>> initSharding(ActorSystem<?> system, ClusterSettings settings,
            ClusterData data, ActorRef<NodeAgent.Command> agent, VmEventLog events) {
        BalloonSettings balloonDefaults = BalloonSettings.create(system.settings().config());
        return ClusterSharding.get(system).init(Entity.of(TYPE_KEY, ctx -> create(ctx.getEntityId(), ctx.getShard(),
                        settings, data, agent, events, balloonDefaults))
                .withStopMessage(Stop.INSTANCE)
                .withMessageExtractor(new OneShardPerVm())
                .withAllocationStrategy(new VmAllocationStrategy(system, data, settings))
                .withSettings(ClusterShardingSettings.create(system).withRememberEntities(true)));
    }

    static Behavior<Command> create(String id, ActorRef<ClusterSharding.ShardCommand> shard,
            ClusterSettings settings, ClusterData data, ActorRef<NodeAgent.Command> agent, VmEventLog events,
            BalloonSettings balloonDefaults) {
        return Behaviors.setup(context -> Behaviors.withStash(10_000, stash -> new VmEntity(context, stash, id, shard,
                settings, data, agent, events, balloonDefaults).loading()));
    }

    private final ActorContext<Command> context;
    private final StashBuffer<Command> stash;
    private final String id;
    private final ActorRef<ClusterSharding.ShardCommand> shard;
    private final ClusterSettings settings;
    private final ClusterData data;
    private final ActorRef<NodeAgent.Command> agent;
    private final VmEventLog events;
    private final BalloonSettings balloonDefaults;
    /** Whether the VM tree exists (spawned, not yet stopped): its start and stop go to the event log. */
    private boolean treeAlive;
    private final String self;
    private String targetSource = "none";

    private VmEntity(ActorContext<Command> context, StashBuffer<Command> stash, String id,
            ActorRef<ClusterSharding.ShardCommand> shard, ClusterSettings settings, ClusterData data,
            ActorRef<NodeAgent.Command> agent, VmEventLog events, BalloonSettings balloonDefaults) {
        this.context = context;
        this.events = events;
        this.stash = stash;
        this.id = id;
        this.shard = shard;
        this.settings = settings;
        this.data = data;
        this.agent = agent;
        this.balloonDefaults = balloonDefaults;
        this.self = Cluster.get(context.getSystem()).selfMember().address().toString();
    }

    private Behavior<Command> loading() {
        context.pipeToSelf(data.vm(id), Loaded::new);
        return Behaviors.receive(Command.class)
                .onMessage(Loaded.class, this::onLoaded)
                .onMessage(Command.class, this::stashIt)
                .build();
    }

    private Behavior<Command> stashIt(Command command) {
        if (command == Stop.INSTANCE) {
            return Behaviors.stopped();
        }
        stash.stash(command);
        return Behaviors.same();
    }

    private Behavior<Command> onLoaded(Loaded loaded) {
        if (loaded.failure() != null) {
            context.getLog().warn("VM {}: cannot read its definition ({}); the entity stops and sharding starts it "
                    + "again", id, loaded.failure().getMessage());
            answerStashed(503, "the definition of VM " + id + " cannot be read now: " + loaded.failure().getMessage());
            return Behaviors.stopped();
        }
        if (loaded.record().isEmpty()) {
            answerStashed(404, "no VM " + id);
            shard.tell(new ClusterSharding.Passivate<>(context.getSelf()));
            return gone();
        }
        return start(loaded.record().get());
    }

    private Behavior<Command> start(VmRecord record) {
        VmTopology topology;
        try {
            VmSpec spec = VmSpecParser.parseString(record.definition());
            topology = VmBuilder.topology(spec, balloonDefaults);
            if (settings.guests().equals("none")) {
                // The tree without vCPUs: the memory VmBuilder allocated is handed over as it is.
                topology = new VmTopology(topology.name(), topology.memory(), topology.regions(), topology.balloon(),
                        topology.containers(), topology.groups());
            }
        } catch (RuntimeException e) {
            context.getLog().error("VM {}: its definition cannot be built here: {}", id, e.getMessage());
            answerStashed(500, "VM " + id + " cannot be built: " + e.getMessage());
            data.removeVm(id);
            shard.tell(new ClusterSharding.Passivate<>(context.getSelf()));
            return gone();
        }
        ActorRef<VmActor.Command> vm = context.spawn(VmActor.create(topology), "vm");
        treeAlive = true;
        events.started(id);
        context.watchWith(vm, new VmTerminated(vm));
        ContextAsk.ask(context, VmActor.StartResult.class, vm, settings.startTimeout(), VmActor.Start::new,
                StartOutcome::new);
        if (!self.equals(record.node())) {
            context.getLog().info("VM {} was placed on {} and starts here, on {}", id, record.node(), self);
            data.putVm(record.on(self)).whenComplete((ok, failure) -> {
                if (failure != null) {
                    context.getSystem().log().warn("VM {}: cannot record its new node: {}", id, failure.getMessage());
                }
            });
        }
        return starting(vm, record);
    }

    private Behavior<Command> starting(ActorRef<VmActor.Command> vm, VmRecord record) {
        return Behaviors.receive(Command.class)
                .onMessage(StartOutcome.class, outcome -> onStartOutcome(vm, record, outcome))
                .onMessage(VmTerminated.class, terminated -> {
                    treeStopped();
                    answerStashed(500, "VM " + id + " stopped while starting");
                    return failed();
                })
                .onMessage(Command.class, this::stashIt)
                .onSignal(PostStop.class, this::onPostStop)
                .build();
    }

    private void treeStopped() {
        if (treeAlive) {
            treeAlive = false;
            events.stopped(id);
        }
    }

    /** The entity stopped with its VM tree still alive (its region stopped): the tree has stopped with it. */
    private Behavior<Command> onPostStop(PostStop signal) {
        treeStopped();
        return Behaviors.same();
    }

    private Behavior<Command> onStartOutcome(ActorRef<VmActor.Command> vm, VmRecord record, StartOutcome outcome) {
        if (outcome.result() instanceof VmActor.Started started) {
            context.getLog().info("VM {} runs on {}", id, self);
            agent.tell(new NodeAgent.VmStarted(id, vm));
            return stash.unstashAll(running(vm, started.components(), record));
        }
        String reason = outcome.result() instanceof VmActor.StartFailed failed ? failed.reason()
                : "no answer within " + settings.startTimeout().toSeconds() + " s";
        context.getLog().error("VM {} failed to start: {}; its definition is removed", id, reason);
        answerStashed(500, "VM " + id + " failed to start: " + reason);
        data.removeVm(id);
        vm.tell(new VmActor.Shutdown(context.getSystem().ignoreRef()));
        return stopping(vm, List.of(), true);
    }

    /** The VM stopped or never ran: remove the definition, passivate. */
    private Behavior<Command> failed() {
        data.removeVm(id);
        shard.tell(new ClusterSharding.Passivate<>(context.getSelf()));
        return gone();
    }

    private Behavior<Command> running(ActorRef<VmActor.Command> vm, VmActor.Components components, VmRecord record) {
        return Behaviors.receive(Command.class)
                .onMessage(Ensure.class, ensure -> {
                    replyStatus(vm, ensure.replyTo());
                    return Behaviors.same();
                })
                .onMessage(GetStatus.class, get -> {
                    replyStatus(vm, get.replyTo());
                    return Behaviors.same();
                })
                .onMessage(SetBalloon.class, set -> onSetBalloon(components, set))
                .onMessage(Delete.class, delete -> {
                    context.pipeToSelf(data.removeVm(id), (ok, failure) -> new DefinitionRemoved(delete.replyTo(),
                            failure));
                    return Behaviors.same();
                })
                .onMessage(DefinitionRemoved.class, removed -> {
                    if (removed.failure() != null) {
                        removed.replyTo().tell(new Reply(id, 503, "VM " + id + " is not deleted: "
                                + removed.failure().getMessage(), null));
                        return Behaviors.same();
                    }
                    context.getLog().info("VM {} deleted; shutting it down", id);
                    vm.tell(new VmActor.Shutdown(context.getSystem().ignoreRef()));
                    return stopping(vm, List.of(removed.replyTo()), true);
                })
                .onMessageEquals(Stop.INSTANCE, () -> {
                    context.getLog().info("VM {} handed off: shutting it down on {}", id, self);
                    vm.tell(new VmActor.Shutdown(context.getSystem().ignoreRef()));
                    return stopping(vm, List.of(), false);
                })
                .onMessage(VmTerminated.class, terminated -> {
                    treeStopped();
                    context.getLog().warn("VM {} stopped by itself; sharding starts it again (remember-entities)", id);
                    return Behaviors.stopped();
                })
                .onSignal(PostStop.class, this::onPostStop)
                .build();
    }

    private void replyStatus(ActorRef<VmActor.Command> vm, ActorRef<Reply> replyTo) {
        String source = targetSource;
        VmMemoryState.read(vm, settings.askTimeout(), context.getSystem().scheduler()).whenComplete((r, failure) ->
                replyTo.tell(failure != null ? new Reply(id, 503, "VM " + id + " did not answer: "
                        + failure.getMessage(), null)
                        : new Reply(id, 200, "VM " + id + " is " + r.state() + " on " + self, new VmStatus(id, self,
                                r.state(), r.ramBytes(), r.pinnedBytes(), r.coordinatedReclaimableBytes(),
                                r.balloonableBytes(), r.actualBytes(), r.targetBytes(), source, r.residentBytes()))));
    }

    private Behavior<Command> onSetBalloon(VmActor.Components components, SetBalloon set) {
        if (components.balloon().isEmpty()) {
            set.replyTo().tell(new Reply(id, 409, "VM " + id + " has no balloon", null));
            return Behaviors.same();
        }
        if (set.targetBytes() < 0) {
            set.replyTo().tell(new Reply(id, 400, "target_bytes = " + set.targetBytes() + ": must not be negative",
                    null));
            return Behaviors.same();
        }
        targetSource = set.targetBytes() == 0 ? "none" : set.source();
        agent.tell(new NodeAgent.TargetSource(id, targetSource));
        AskPattern.<BalloonActor.Command, BalloonActor.TargetResult>ask(components.balloon().get(),
                replyTo -> new BalloonActor.SetTarget(set.targetBytes(), replyTo), settings.askTimeout(),
                context.getSystem().scheduler()).whenComplete((result, failure) -> {
                    if (result instanceof BalloonActor.TargetSet done) {
                        set.replyTo().tell(new Reply(id, 200, "VM " + id + ": balloon target set to "
                                + done.targetBytes() + " bytes", null));
                    } else if (result instanceof BalloonActor.TargetRefused refused) {
                        set.replyTo().tell(new Reply(id, 400, "VM " + id + ": balloon target refused: "
                                + refused.reason(), null));
                    } else {
                        set.replyTo().tell(new Reply(id, 503, "VM " + id + ": the balloon did not answer: "
                                + (failure != null ? failure.getMessage() : "no reply"), null));
                    }
                });
        return Behaviors.same();
    }

    /**
     * Waiting for the VM tree to stop; then answer {@code deleted}, and passivate ({@code passivate}) or stop (a
     * hand-off's stop message came already).
     */
    private Behavior<Command> stopping(ActorRef<VmActor.Command> vm, List<ActorRef<Reply>> deleted,
            boolean passivate) {
        List<ActorRef<Reply>> waiting = new ArrayList<>(deleted);
        boolean[] stopRequested = {!passivate};
        return Behaviors.receive(Command.class)
                .onMessage(VmTerminated.class, terminated -> {
                    treeStopped();
                    waiting.forEach(r -> r.tell(new Reply(id, 200, "VM " + id + " deleted", null)));
                    if (stopRequested[0]) {
                        return Behaviors.stopped();
                    }
                    shard.tell(new ClusterSharding.Passivate<>(context.getSelf()));
                    return gone();
                })
                .onMessage(Delete.class, delete -> {
                    waiting.add(delete.replyTo());
                    return Behaviors.same();
                })
                .onMessageEquals(Stop.INSTANCE, () -> {
                    stopRequested[0] = true;
                    return Behaviors.same();
                })
                .onMessage(StartOutcome.class, outcome -> Behaviors.same())
                .onMessage(DefinitionRemoved.class, removed -> Behaviors.same())
                .onMessage(Command.class, command -> {
                    replyTo(command).ifPresent(r -> r.tell(new Reply(id, 409, "VM " + id + " is stopping", null)));
                    return Behaviors.same();
                })
                .onSignal(PostStop.class, this::onPostStop)
                .build();
    }

    /** Passivating: every command is answered 404 until sharding's stop message. */
    private Behavior<Command> gone() {
        return Behaviors.receive(Command.class)
                .onMessageEquals(Stop.INSTANCE, Behaviors::stopped)
                .onMessage(Command.class, command -> {
                    replyTo(command).ifPresent(r -> r.tell(new Reply(id, 404, "no VM " + id, null)));
                    return Behaviors.same();
                })
                .build();
    }

    private void answerStashed(int status, String message) {
        stash.forEach(command -> replyTo(command).ifPresent(r -> r.tell(new Reply(id, status, message, null))));
        stash.clear();
    }

    private static Optional<ActorRef<Reply>> replyTo(Command command) {
        if (command instanceof Ensure c) {
            return Optional.of(c.replyTo());
        }
        if (command instanceof GetStatus c) {
            return Optional.of(c.replyTo());
        }
        if (command instanceof SetBalloon c) {
            return Optional.of(c.replyTo());
        }
        if (command instanceof Delete c) {
            return Optional.of(c.replyTo());
        }
        return Optional.empty();
    }
}
