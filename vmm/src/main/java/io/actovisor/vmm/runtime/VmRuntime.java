package io.actovisor.vmm.runtime;

import io.actovisor.actors.balloon.BalloonActor;
import io.actovisor.actors.balloon.VirtioBalloonActor;
import io.actovisor.actors.events.ActovisorEvent;
import io.actovisor.actors.kvm.VcpuActor;
import io.actovisor.actors.vfio.VfioContainerActor;
import io.actovisor.actors.vfio.VfioGroupActor;
import io.actovisor.actors.vm.VmActor;
import io.actovisor.devices.iommu.DmaMapping;
import io.actovisor.vmm.api.ApiException;
import io.actovisor.vmm.api.VmManagement;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Function;
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
    private final Duration timeout;
    private final AtomicLong commits = new AtomicLong();
    private final AtomicLong refusedCommits = new AtomicLong();

    /**
     * @param groupContainers each configured group's container, for hot attach
     */
    public VmRuntime(ActorSystem<?> system, ActorRef<VmActor.Command> vm, VmActor.Components components,
            Map<String, String> groupContainers, Duration timeout) {
        this.system = system;
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

    @Override
    public CompletionStage<Map<String, Object>> vm() {
        return this.<VmActor.Command, VmActor.VmInfo>ask(vm, VmActor.GetInfo::new).thenApply(info -> {
            Map<String, Object> out = new LinkedHashMap<>();
            out.put("name", info.name());
            out.put("state", info.state().name());
            out.put("memory_bytes", info.ramBytes());
            out.put("memory_mib", info.ramBytes() / MIB);
            out.put("regions", info.regions());
            return out;
        });
    }

    @Override
    public CompletionStage<Void> action(Action action) {
        CompletionStage<VmActor.ActionResult> result = switch (action) {
            case Pause -> ask(vm, VmActor.Pause::new);
            case Resume -> ask(vm, VmActor.Resume::new);
            case Shutdown -> ask(vm, VmActor.Shutdown::new);
        };
        return result.thenApply(r -> {
            if (r instanceof VmActor.ActionRefused refused) {
                throw ApiException.conflict(refused.reason());
            }
            return null;
        });
    }

    private ActorRef<BalloonActor.Command> balloonRef() {
        return components.balloon().orElseThrow(() -> ApiException.notFound("this VM has no balloon "
                + "(actovisor.vm.balloon.enabled = false)"));
    }

    @Override
    public CompletionStage<Map<String, Object>> balloon() {
        return balloonStatus().thenApply(VmRuntime::balloonJson);
    }

    private CompletionStage<BalloonActor.BalloonStatus> balloonStatus() {
        try {
            return ask(balloonRef(), BalloonActor.GetStatus::new);
        } catch (ApiException e) {
            return CompletableFuture.failedFuture(e);
        }
    }

    private static Map<String, Object> balloonJson(BalloonActor.BalloonStatus s) {
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("amount_mib", s.targetBytes() / MIB);
        out.put("target_bytes", s.targetBytes());
        out.put("actual_bytes", s.actualBytes());
        out.put("inhibitors", s.inhibitors());
        out.put("inhibitor_holders", s.holders());
        out.put("discards", s.discards());
        out.put("pages_discarded", s.pagesDiscarded());
        out.put("discards_skipped", s.skippedDiscards());
        out.put("pages_skipped", s.pagesSkipped());
        out.put("unsafe_ignore_inhibitor", s.unsafeIgnoreInhibitor());
        return out;
    }

    @Override
    public CompletionStage<Map<String, Object>> setBalloonTarget(long amountMib) {
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
        return set.thenCompose(result -> {
            if (result instanceof BalloonActor.TargetRefused refused) {
                throw ApiException.badRequest("field 'amount_mib' value " + amountMib + ": " + refused.reason());
            }
            return balloon();
        });
    }

    @Override
    public CompletionStage<Map<String, Object>> balloonStatistics() {
        ActorRef<io.actovisor.actors.device.DeviceIo.Command> device = components.devices().get("balloon");
        if (device == null) {
            return CompletableFuture.failedFuture(ApiException.notFound("this VM has no virtio-balloon device"));
        }
        CompletionStage<VirtioBalloonActor.Statistics> stats = ask(device, VirtioBalloonActor.GetStatistics::new);
        return stats.thenApply(s -> {
            Map<String, Object> out = new LinkedHashMap<>();
            out.put("target_pages", s.targetPages());
            out.put("actual_pages", s.actualPages());
            out.put("inflate_count", s.inflateCount());
            out.put("deflate_count", s.deflateCount());
            out.put("stats_updates", s.statsUpdates());
            out.put("event_fails", s.eventFails());
            s.latest().ifPresent(latest -> out.putAll(latest.values()));
            return out;
        });
    }

    @Override
    public CompletionStage<Map<String, Object>> vfio() {
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
            Map<String, Object> out = new LinkedHashMap<>();
            List<Map<String, Object>> cs = new ArrayList<>();
            for (CompletableFuture<VfioContainerActor.State> f : containers) {
                VfioContainerActor.State s = f.join();
                Map<String, Object> c = new LinkedHashMap<>();
                c.put("name", s.name());
                c.put("backend", s.backend());
                c.put("groups", s.groups());
                c.put("mappings", s.mappings().stream().map(VmRuntime::mappingJson).toList());
                c.put("pinned_bytes", s.pinnedBytes());
                cs.add(c);
            }
            out.put("containers", cs);
            List<Map<String, Object>> gs = new ArrayList<>();
            for (CompletableFuture<VfioGroupActor.State> f : groups) {
                VfioGroupActor.State s = f.join();
                Map<String, Object> g = new LinkedHashMap<>();
                g.put("id", s.groupId());
                g.put("container", s.container().orElse(null));
                g.put("attached", s.container().isPresent());
                g.put("balloon_compatible", s.balloonCompatible());
                g.put("inhibiting", s.inhibiting());
                gs.add(g);
            }
            out.put("groups", gs);
            BalloonActor.BalloonStatus b = balloon.join();
            out.put("inhibitor_holders", b == null ? List.of() : b.holders());
            return out;
        });
    }

    private static Map<String, Object> mappingJson(DmaMapping m) {
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("iova", "0x" + Long.toHexString(m.iova().base()));
        out.put("size", m.iova().size());
        out.put("permissions", m.permissions().name());
        return out;
    }

    private ActorRef<VfioGroupActor.Command> group(String id) {
        ActorRef<VfioGroupActor.Command> group = components.groups().get(id);
        if (group == null) {
            throw ApiException.notFound("VFIO group '" + id + "' is not configured for this VM (configured: "
                    + components.groups().keySet() + ")");
        }
        return group;
    }

    @Override
    public CompletionStage<Map<String, Object>> attachGroup(String groupId) {
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
            VfioGroupActor.Attached a = (VfioGroupActor.Attached) result;
            return Map.of("id", a.groupId(), "container", a.container(), "attached", true, "inhibiting",
                    a.inhibiting());
        });
    }

    @Override
    public CompletionStage<Map<String, Object>> detachGroup(String groupId) {
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
            return Map.of("id", groupId, "attached", false);
        });
    }

    @Override
    public CompletionStage<List<Metric>> metrics() {
        // vCPU counters are read directly: a vCPU's thread is inside the guest and cannot answer a message.
        List<VcpuActor.Control> vcpus = components.vcpus();
        return vfio().thenCombine(components.balloon().isPresent() ? balloonStatus()
                : CompletableFuture.completedFuture(null), (vfio, balloon) -> {
                    List<Metric> out = new ArrayList<>();
                    if (balloon != null) {
                        out.add(gauge("actovisor_balloon_target_bytes", "Balloon target", balloon.targetBytes()));
                        out.add(gauge("actovisor_balloon_actual_bytes", "Memory the guest has given up",
                                balloon.actualBytes()));
                        out.add(gauge("actovisor_balloon_inhibitors", "Balloon inhibitors held", balloon.inhibitors()));
                        out.add(counter("actovisor_balloon_discards_total", "Discards done", balloon.discards()));
                        out.add(counter("actovisor_balloon_discards_skipped_total", "Discards skipped (inhibited)",
                                balloon.skippedDiscards()));
                        out.add(counter("actovisor_balloon_pages_discarded_total", "Pages discarded",
                                balloon.pagesDiscarded()));
                        out.add(counter("actovisor_balloon_pages_skipped_total", "Pages not discarded (inhibited)",
                                balloon.pagesSkipped()));
                    }
                    @SuppressWarnings("unchecked")
                    List<Map<String, Object>> containers = (List<Map<String, Object>>) vfio.get("containers");
                    for (Map<String, Object> c : containers) {
                        Map<String, String> labels = Map.of("container", (String) c.get("name"));
                        out.add(new Metric("actovisor_iommu_mappings", "gauge", "IOMMU mappings", labels,
                                ((List<?>) c.get("mappings")).size()));
                        out.add(new Metric("actovisor_iommu_pinned_bytes", "gauge", "Bytes pinned by the IOMMU",
                                labels, ((Number) c.get("pinned_bytes")).doubleValue()));
                    }
                    for (VcpuActor.Control v : vcpus) {
                        String id = Integer.toString(v.vcpu().id());
                        v.counters().snapshot().forEach((reason, count) -> out.add(new Metric(
                                "actovisor_vcpu_exits_total", "counter", "vCPU exits by reason", Map.of("vcpu", id,
                                        "reason", reason), count)));
                        out.add(new Metric("actovisor_vcpu_unclaimed_accesses_total", "counter",
                                "Port and MMIO accesses no device claimed", Map.of("vcpu", id),
                                v.counters().unclaimed()));
                    }
                    out.add(counter("actovisor_topology_commits_total", "Memory topology commits applied",
                            commits.get()));
                    out.add(counter("actovisor_topology_commits_refused_total", "Memory topology commits refused",
                            refusedCommits.get()));
                    return out;
                });
    }

    private static Metric gauge(String name, String help, double value) {
        return new Metric(name, "gauge", help, Map.of(), value);
    }

    private static Metric counter(String name, String help, double value) {
        return new Metric(name, "counter", help, Map.of(), value);
    }
}
