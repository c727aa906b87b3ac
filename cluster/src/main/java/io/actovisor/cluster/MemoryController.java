package io.actovisor.cluster;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.Deque;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Collectors;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;
import org.apache.pekko.cluster.MemberStatus;
import org.apache.pekko.cluster.sharding.typed.javadsl.ClusterSharding;
import org.apache.pekko.cluster.typed.Cluster;
import org.apache.pekko.cluster.typed.ClusterSingleton;
import org.apache.pekko.cluster.typed.SingletonActor;

/**
 * The cluster's memory manager, a cluster singleton. It does two jobs, one at a time:
 *
 * <p><b>Admission.</b> {@link Admit} places a new VM with {@link Placement} against the nodes that are Up (their
 * capacity from their reports, their committed memory from the VM records placed on them, so VMs admitted a moment
 * ago count) and writes the VM's record with a majority write before answering. Admissions are handled one after
 * another, so two concurrent requests cannot both take the last room on a node.
 *
 * <p><b>Balloon targets.</b> Every interval it reads the node reports. On a node whose committed memory is above
 * its threshold it sets balloon targets on the node's balloonable VMs, largest first, each at most down to its
 * floor, until the excess is covered; it never sets one on a VM whose discards are disabled (pinned). When the node
 * is back under its threshold it takes back the targets it set. Targets set through the API are the operator's: it
 * leaves them alone and counts them as reclaimed. Targets are absolute values, so a controller restarted on another
 * node (the singleton moved) computes the same targets and sends nothing twice in effect.
 *
 * <p>Every decision is an {@link Event} with its reason ({@code GET /cluster/events}); the last 1,000 are kept in
 * the singleton's memory and are lost when it moves.
 */
public final class MemoryController extends AbstractBehavior<MemoryController.Command> {
    private static final int MAX_EVENTS = 1000;
    private static final long PAGE = 4096;

    /** What the controller accepts. */
    public sealed interface Command extends ClusterSerializable {
    }

    /** Place and record a new VM ({@code vm.node()} is ignored). */
    public record Admit(VmRecord vm, ActorRef<AdmitReply> replyTo) implements Command {
    }

    /**
     * The outcome of an admission.
     *
     * @param status 201 placed, 409 the id exists, 507 it fits nowhere, 503 the data could not be read or written
     */
    public record AdmitReply(int status, String node, String message) implements ClusterSerializable {
    }

    /** The recorded decisions. */
    public record GetEvents(ActorRef<EventList> replyTo) implements Command {
    }

    public record EventList(List<Event> events) implements ClusterSerializable {
    }

    /**
     * One decision.
     *
     * @param kind {@code placed}, {@code refused}, {@code inflate}, {@code deflate}, {@code skip-pinned},
     *             {@code short}
     */
    public record Event(long atMillis, String kind, String node, String vm, long targetBytes, String reason)
            implements ClusterSerializable {
    }

    private enum Tick implements Command {
        INSTANCE
    }

    private record NodesRead(Map<String, NodeReport> nodes, Throwable failure) implements Command {
    }

    private record AdmitRead(Admit admit, Map<String, VmRecord> vms, Map<String, NodeReport> nodes,
            Throwable failure) implements Command {
    }

    private record AdmitWritten(Admit admit, VmRecord record, String reason, Throwable failure) implements Command {
    }

    /** Start the singleton (on the oldest node) and return a proxy to it. */
    public static ActorRef<Command> initSingleton(ActorSystem<?> system, ClusterSettings settings, ClusterData data) {
        return ClusterSingleton.get(system).init(SingletonActor.of(create(settings, data), "memory-controller"));
    }

    static Behavior<Command> create(ClusterSettings settings, ClusterData data) {
        return Behaviors.setup(context -> Behaviors.withTimers(timers -> {
            timers.startTimerWithFixedDelay(Tick.INSTANCE, settings.controllerInterval());
            return new MemoryController(context, settings, data);
        }));
    }

    private final ClusterSettings settings;
    private final ClusterData data;
    private final Deque<Event> events = new ArrayDeque<>();
    private final Deque<Admit> admissions = new ArrayDeque<>();
    private boolean admitting;
    /** Targets sent and when, so a target is not sent again while the reports still show the old one. */
    private final Map<String, long[]> sent = new HashMap<>();
    /** Per node: the notes already made in its current pressure episode (skipped pinned VMs, shortfall). */
    private final Map<String, Set<String>> noted = new HashMap<>();

    private MemoryController(ActorContext<Command> context, ClusterSettings settings, ClusterData data) {
        super(context);
        this.settings = settings;
        this.data = data;
        context.getLog().info("memory controller started on {}", selfAddress());
    }

    @Override
    public Receive<Command> createReceive() {
        return newReceiveBuilder()
                .onMessage(Admit.class, this::onAdmit)
                .onMessage(AdmitRead.class, this::onAdmitRead)
                .onMessage(AdmitWritten.class, this::onAdmitWritten)
                .onMessage(GetEvents.class, get -> {
                    get.replyTo().tell(new EventList(List.copyOf(events)));
                    return this;
                })
                .onMessageEquals(Tick.INSTANCE, this::onTick)
                .onMessage(NodesRead.class, this::onNodesRead)
                .build();
    }

    private Behavior<Command> onAdmit(Admit admit) {
        admissions.add(admit);
        return admitNext();
    }

    private Behavior<Command> admitNext() {
        if (admitting || admissions.isEmpty()) {
            return this;
        }
        admitting = true;
        Admit admit = admissions.peek();
        getContext().pipeToSelf(data.vms().thenCombine(data.nodes(), (vms, nodes) -> new Object[] {vms, nodes}),
                (both, failure) -> failure != null ? new AdmitRead(admit, Map.of(), Map.of(), failure)
                        : new AdmitRead(admit, cast(both[0]), cast(both[1]), null));
        return this;
    }

    @SuppressWarnings("unchecked")
    private static <T> T cast(Object o) {
        return (T) o;
    }

    private Behavior<Command> onAdmitRead(AdmitRead read) {
        VmRecord vm = read.admit().vm();
        if (read.failure() != null) {
            return admitted(read.admit(), new AdmitReply(503, null, "VM " + vm.id() + " is not admitted: "
                    + read.failure().getMessage()));
        }
        if (read.vms().containsKey(vm.id())) {
            return admitted(read.admit(), new AdmitReply(409, read.vms().get(vm.id()).node(), "a VM named " + vm.id()
                    + " exists already (on " + read.vms().get(vm.id()).node() + ")"));
        }
        Set<String> up = upMembers();
        List<Placement.Node> nodes = new ArrayList<>();
        for (NodeReport report : read.nodes().values()) {
            if (up.contains(report.node())) {
                long committed = read.vms().values().stream().filter(v -> v.node().equals(report.node()))
                        .mapToLong(VmRecord::ramBytes).sum();
                nodes.add(new Placement.Node(report.node(), report.capacityBytes(), committed));
            }
        }
        Placement.Decision decision = Placement.place(new Placement.Candidate(vm.id(), vm.ramBytes(), vm.pinned(),
                vm.balloonable()), nodes, settings.overcommitRatio());
        if (decision instanceof Placement.Refused refused) {
            record("refused", null, vm.id(), 0, refused.reason());
            return admitted(read.admit(), new AdmitReply(507, null, refused.reason()));
        }
        Placement.Placed placed = (Placement.Placed) decision;
        VmRecord record = vm.on(placed.node());
        getContext().pipeToSelf(data.putVm(record), (ok, failure) -> new AdmitWritten(read.admit(), record,
                placed.reason(), failure));
        return this;
    }

    private Behavior<Command> onAdmitWritten(AdmitWritten written) {
        if (written.failure() != null) {
            return admitted(written.admit(), new AdmitReply(503, null, "VM " + written.record().id()
                    + " is not admitted: " + written.failure().getMessage()));
        }
        record("placed", written.record().node(), written.record().id(), 0, written.reason());
        return admitted(written.admit(), new AdmitReply(201, written.record().node(), written.reason()));
    }

    private Behavior<Command> admitted(Admit admit, AdmitReply reply) {
        admit.replyTo().tell(reply);
        admissions.poll();
        admitting = false;
        return admitNext();
    }

    private Behavior<Command> onTick() {
        getContext().pipeToSelf(data.nodes(), NodesRead::new);
        return this;
    }

    private Behavior<Command> onNodesRead(NodesRead read) {
        if (read.failure() != null) {
            getContext().getLog().warn("cannot read the node reports: {}", read.failure().getMessage());
            return this;
        }
        Set<String> up = upMembers();
        long now = System.currentTimeMillis();
        for (NodeReport node : read.nodes().values()) {
            if (up.contains(node.node())) {
                balance(node, now);
            }
        }
        return this;
    }

    /** Decide the balloon targets of one node's VMs. */
    private void balance(NodeReport node, long now) {
        long excess = node.committedBytes() - node.thresholdBytes();
        Set<String> notes = noted.computeIfAbsent(node.node(), n -> new HashSet<>());
        Map<String, Long> desired = new HashMap<>();
        Map<String, String> reasons = new HashMap<>();
        if (excess > 0) {
            long need = excess;
            List<NodeReport.VmReport> balloonable = node.vms().stream().filter(v -> v.balloonableBytes() > 0)
                    .sorted(Comparator.comparingLong(NodeReport.VmReport::ramBytes).reversed()
                            .thenComparing(NodeReport.VmReport::id))
                    .toList();
            for (NodeReport.VmReport vm : balloonable) {
                if (vm.targetSource().equals("api")) {
                    need -= vm.targetBytes();
                    continue;
                }
                long floor = roundUp((long) Math.ceil(vm.ramBytes() * settings.balloonFloor()));
                long give = Math.max(0, Math.min(roundUp(Math.max(need, 0)), vm.ramBytes() - floor));
                desired.put(vm.id(), give);
                reasons.put(vm.id(), give > 0
                        ? "node " + node.node() + " has " + node.committedBytes() + " bytes committed, above its "
                                + "threshold of " + node.thresholdBytes() + " by " + excess + " bytes: the largest "
                                + "balloonable VMs give memory first, each down to its floor of " + floor + " bytes"
                        : "node " + node.node() + " is above its threshold, but larger balloonable VMs cover the "
                                + "excess");
                need -= give;
            }
            for (NodeReport.VmReport vm : node.vms()) {
                if (vm.pinnedBytes() > 0 && notes.add("pinned " + vm.id())) {
                    record("skip-pinned", node.node(), vm.id(), 0, "node " + node.node() + " is above its threshold, "
                            + "but VM " + vm.id() + " is pinned (an attached VFIO group disables discards): its "
                            + vm.ramBytes() + " bytes cannot be reclaimed, so it gets no balloon target");
                }
            }
            if (need > 0 && notes.add("short " + need)) {
                record("short", node.node(), null, 0, "node " + node.node() + " stays " + need + " bytes above its "
                        + "threshold: no more balloonable memory above the VMs' floors (pinned: " + node.pinnedBytes()
                        + " bytes)");
            }
        } else {
            notes.clear();
        }
        for (NodeReport.VmReport vm : node.vms()) {
            if (!desired.containsKey(vm.id()) && vm.targetSource().equals("controller") && vm.targetBytes() > 0) {
                desired.put(vm.id(), 0L);
                reasons.put(vm.id(), "node " + node.node() + " has " + node.committedBytes() + " bytes committed, "
                        + "within its threshold of " + node.thresholdBytes() + " bytes: the controller takes back "
                        + "the target it set");
            }
        }
        for (Map.Entry<String, Long> d : desired.entrySet()) {
            NodeReport.VmReport vm = node.vms().stream().filter(v -> v.id().equals(d.getKey())).findFirst()
                    .orElseThrow();
            long target = d.getValue();
            if (target == vm.targetBytes()) {
                sent.remove(vm.id());
                continue;
            }
            long[] last = sent.get(vm.id());
            if (last != null && last[0] == target && now - last[1] < 3 * settings.controllerInterval().toMillis()) {
                continue;
            }
            sent.put(vm.id(), new long[] {target, now});
            record(target > vm.targetBytes() ? "inflate" : "deflate", node.node(), vm.id(), target,
                    reasons.get(vm.id()));
            ClusterSharding.get(getContext().getSystem()).entityRefFor(VmEntity.TYPE_KEY, vm.id())
                    .tell(new VmEntity.SetBalloon(target, "controller", getContext().getSystem().ignoreRef()));
        }
    }

    private static long roundUp(long bytes) {
        return (bytes + PAGE - 1) / PAGE * PAGE;
    }

    private void record(String kind, String node, String vm, long target, String reason) {
        getContext().getLog().info("controller: {} {} {}: {}", kind, vm == null ? "" : vm, target == 0 ? ""
                : target + " bytes", reason);
        events.addLast(new Event(System.currentTimeMillis(), kind, node, vm, target, reason));
        while (events.size() > MAX_EVENTS) {
            events.removeFirst();
        }
    }

    private Set<String> upMembers() {
        return java.util.stream.StreamSupport.stream(Cluster.get(getContext().getSystem()).state().getMembers()
                        .spliterator(), false)
                .filter(m -> m.status() == MemberStatus.up())
                .map(m -> m.address().toString()).collect(Collectors.toSet());
    }

    private String selfAddress() {
        return Cluster.get(getContext().getSystem()).selfMember().address().toString();
    }
}
