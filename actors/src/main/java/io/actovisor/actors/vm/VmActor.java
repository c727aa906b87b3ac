package io.actovisor.actors.vm;

import io.actovisor.actors.ask.ContextAsk;
import io.actovisor.actors.balloon.BalloonActor;
import io.actovisor.actors.balloon.BalloonSettings;
import io.actovisor.actors.discard.DiscardManager;
import io.actovisor.actors.discard.DiscardMode;
import io.actovisor.actors.device.DeviceIo;
import io.actovisor.actors.device.DeviceTimeouts;
import io.actovisor.actors.guest.ScriptedGuestActor;
import io.actovisor.actors.kvm.IoMap;
import io.actovisor.actors.kvm.KvmMemoryActor;
import io.actovisor.actors.kvm.VcpuHandle;
import io.actovisor.devices.boot.BootLayout;
import io.actovisor.kernel.kvm.Kvm;
import io.actovisor.kernel.kvm.KvmVcpu;
import io.actovisor.kernel.kvm.KvmVm;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.GuestMemoryView;
import io.actovisor.actors.memory.AddressSpaceActor;
import io.actovisor.actors.vfio.VfioContainerActor;
import io.actovisor.actors.vfio.VfioGroupActor;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.RegionKind;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.PostStop;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;

/**
 * One VM: it builds the actor tree of a {@link VmTopology}, owns its lifecycle (created, starting, running,
 * paused, stopped) and its host memory, and tears everything down when it stops.
 *
 * <p>{@link Start} spawns the address space and commits the whole memory map as one commit, then the balloon, the
 * VFIO containers and groups, and attaches the groups marked {@code attachAtStart} one by one. If any step fails,
 * the VM answers {@link StartFailed} with that step's error and stops: children stop first, then the VM's
 * {@code PostStop} closes the host memory, so a VM that failed to start leaves no pin, mapping or fd behind.
 * {@link Shutdown} stops the VM the same way; watch the VM actor to learn when teardown is complete.
 */
public final class VmActor extends AbstractBehavior<VmActor.Command> {

    /** What a VM accepts. */
    public sealed interface Command {
    }

    /** Build the tree and start the VM. */
    public record Start(ActorRef<StartResult> replyTo) implements Command {
    }

    /** The outcome of {@link Start}. */
    public sealed interface StartResult permits Started, StartFailed {
    }

    /** The VM runs; {@code components} are its actors. */
    public record Started(String name, Components components) implements StartResult {
    }

    /** The VM could not start; it has stopped and released everything. */
    public record StartFailed(String name, String reason) implements StartResult {
    }

    /** Pause the VM's vCPUs. */
    public record Pause(ActorRef<ActionResult> replyTo) implements Command {
    }

    /** Resume the VM's vCPUs. */
    public record Resume(ActorRef<ActionResult> replyTo) implements Command {
    }

    /** Stop the VM and release everything it holds; the actor stops when teardown is done. */
    public record Shutdown(ActorRef<ActionResult> replyTo) implements Command {
    }

    /** The outcome of a lifecycle action. */
    public sealed interface ActionResult permits ActionDone, ActionRefused {
    }

    /** The action took effect; {@code state} is the VM's state now. */
    public record ActionDone(State state) implements ActionResult {
    }

    /** The action does not apply in the VM's state. */
    public record ActionRefused(State state, String reason) implements ActionResult {
    }

    /** Ask for the VM's state and components. */
    public record GetInfo(ActorRef<VmInfo> replyTo) implements Command {
    }

    /** Ask how many bytes of the VM's guest RAM are resident in host memory now (cluster reports read it). */
    public record GetResident(ActorRef<Resident> replyTo) implements Command {
    }

    /**
     * Bytes of the VM's RAM regions resident in host memory ({@link HostMemory#residentBytes}, mincore): what the
     * guest uses and has not given back. 0 once the memory is released.
     */
    public record Resident(String name, long residentBytes) {
    }

    /** Ask which guest the VM runs and how it is doing. */
    public record GetGuest(ActorRef<GuestInfo> replyTo) implements Command {
    }

    /** Ask for the VM's virtio-balloon device (the device whose role is {@code VIRTIO_BALLOON}), if it has one. */
    public record GetBalloonDevice(ActorRef<BalloonDevice> replyTo) implements Command {
    }

    /** The VM's virtio-balloon device; empty when the VM has none or has not spawned its devices yet. */
    public record BalloonDevice(Optional<ActorRef<DeviceIo.Command>> device) {
    }

    /** How a VM's guest is doing. */
    public enum GuestState {
        /** No guest runs (not started yet, or a VM without a guest). */
        NONE,
        RUNNING,
        /** The guest's program ended. */
        HALTED,
        /** The guest stopped on an error; the VM keeps running. */
        FAILED
    }

    /**
     * The VM's guest.
     *
     * @param kind    {@code firmware}, {@code scripted}, {@code linux} or {@code none}
     * @param program the firmware program, the scripted program, or the Linux kernel's source (its file)
     * @param failure why the guest stopped, when it failed
     */
    public record GuestInfo(String kind, String program, GuestState state, Optional<String> failure) {
    }

    /** A VM's lifecycle state. */
    public enum State {
        CREATED,
        STARTING,
        RUNNING,
        PAUSED,
        STOPPING
    }

    /** What a VM is and holds. */
    public record VmInfo(String name, State state, long ramBytes, int regions, Optional<Components> components) {
    }

    /**
     * The VM's actors, for management to talk to, and its live guest memory ({@code guestMemory}: what the address
     * space {@code memory} publishes after each commit), for the devices it builds.
     */
    public record Components(ActorRef<AddressSpaceActor.Command> memory,
            Optional<ActorRef<BalloonActor.Command>> balloon,
            Map<String, ActorRef<VfioContainerActor.Command>> containers,
            Map<String, ActorRef<VfioGroupActor.Command>> groups,
            List<VcpuHandle> vcpus,
            Map<String, ActorRef<DeviceIo.Command>> devices,
            ActorRef<DiscardManager.Command> discardManager,
            GuestMemoryView guestMemory) {
        public Components {
            containers = Map.copyOf(containers);
            groups = Map.copyOf(groups);
            vcpus = List.copyOf(vcpus);
            devices = Map.copyOf(devices);
        }
    }

    private record Committed(AddressSpaceActor.CommitResult result) implements Command {
    }

    private record GroupAttached(String groupId, VfioGroupActor.AttachResult result) implements Command {
    }

    private record StepTimedOut(String step) implements Command {
    }

    /** The discard manager could not map a discarded block again: the guest must stop before it reuses it. */
    private record DiscardFailStop(DiscardManager.FailStop failStop) implements Command {
    }

    private record SlotsSubscribed(AddressSpaceActor.SubscribeResult result) implements Command {
    }

    private record VcpuReported(VcpuHandle.Event event) implements Command {
    }

    private record LinuxReported(io.actovisor.actors.linux.LinuxGuestEvent event) implements Command {
    }

    private record ScriptedGuestReported(ScriptedGuestActor.Event event) implements Command {
    }

    /** How long one start step (the memory commit, one group attach) may take. */
    public static final Duration STEP_TIMEOUT = Duration.ofSeconds(60);
    /** How long teardown waits for a stopped vCPU thread to end. */
    private static final Duration VCPU_STOP_WAIT = Duration.ofSeconds(5);

    private final VmTopology topology;
    /** What the address space publishes after each commit; devices, the boot layout and the guest read through it. */
    private final GuestMemoryView guestMemory = GuestMemoryView.empty();
    private State state = State.CREATED;
    private ActorRef<StartResult> starter;
    private ActorRef<AddressSpaceActor.Command> memory;
    private Optional<ActorRef<BalloonActor.Command>> balloon = Optional.empty();
    private ActorRef<DiscardManager.Command> discardManager;
    private final Map<String, ActorRef<VfioContainerActor.Command>> containers = new LinkedHashMap<>();
    private final Map<String, ActorRef<VfioGroupActor.Command>> groups = new LinkedHashMap<>();
    private final Deque<VmTopology.Group> toAttach = new ArrayDeque<>();
    private boolean memoryClosed;
    private Kvm kvm;
    private KvmVm kvmVm;
    private final List<VcpuHandle> vcpus = new ArrayList<>();
    private final Map<String, ActorRef<DeviceIo.Command>> devices = new LinkedHashMap<>();
    private io.actovisor.devices.boot.linux.LinuxBoot.Loaded linuxLoaded;
    private GuestInfo guestInfo = new GuestInfo("none", "", GuestState.NONE, Optional.empty());

    private VmActor(ActorContext<Command> context, VmTopology topology) {
        super(context);
        this.topology = topology;
    }

    /** A VM that will build {@code topology} when it receives {@link Start}; it owns the topology's memory. */
    public static Behavior<Command> create(VmTopology topology) {
        Objects.requireNonNull(topology, "topology");
        return Behaviors.setup(context -> new VmActor(context, topology));
    }

    @Override
    public Receive<Command> createReceive() {
        return newReceiveBuilder()
                .onMessage(Start.class, this::onStart)
                .onMessage(Committed.class, this::onCommitted)
                .onMessage(GroupAttached.class, this::onGroupAttached)
                .onMessage(StepTimedOut.class, this::onStepTimedOut)
                .onMessage(SlotsSubscribed.class, this::onSlotsSubscribed)
                .onMessage(VcpuReported.class, this::onVcpuReported)
                .onMessage(LinuxReported.class, this::onLinuxReported)
                .onMessage(ScriptedGuestReported.class, this::onScriptedGuestReported)
                .onMessage(GetGuest.class, this::onGetGuest)
                .onMessage(GetBalloonDevice.class, this::onGetBalloonDevice)
                .onMessage(Pause.class, this::onPause)
                .onMessage(DiscardFailStop.class, this::onDiscardFailStop)
                .onMessage(Resume.class, this::onResume)
                .onMessage(Shutdown.class, this::onShutdown)
                .onMessage(GetInfo.class, this::onGetInfo)
                .onMessage(GetResident.class, this::onGetResident)
                .onSignal(PostStop.class, signal -> onPostStop())
                .build();
    }

    private Behavior<Command> onStart(Start start) {
        if (state != State.CREATED) {
            start.replyTo().tell(new StartFailed(topology.name(), "VM " + topology.name() + " was already started ("
                    + state + ")"));
            return this;
        }
        state = State.STARTING;
        starter = start.replyTo();
        memory = getContext().spawn(AddressSpaceActor.create(topology.name() + "-memory",
                AddressSpaceActor.DEFAULT_ACK_TIMEOUT, guestMemory), "memory");
        if (topology.guest().isPresent()) {
            try {
                kvm = Kvm.open();
                kvmVm = kvm.createVm();
                if (topology.guest().get().linux().isPresent()) {
                    kvmVm.createInterruptControllers();
                }
            } catch (RuntimeException e) {
                return failStart("cannot create the KVM VM: " + e.getMessage());
            }
            ActorRef<AddressSpaceActor.SubscribeResult> subscribed = getContext().messageAdapter(
                    AddressSpaceActor.SubscribeResult.class, SlotsSubscribed::new);
            getContext().spawn(KvmMemoryActor.create(kvmVm, memory, Optional.of(subscribed)), "kvm-memory");
            return this;
        }
        return commitMemory();
    }

    private Behavior<Command> onSlotsSubscribed(SlotsSubscribed subscribed) {
        if (subscribed.result() instanceof AddressSpaceActor.SubscribeFailed failed) {
            return failStart("KVM memory slots could not subscribe: " + failed.reason());
        }
        return commitMemory();
    }

    private Behavior<Command> commitMemory() {
        List<AddressSpaceActor.RegionChange> changes = new ArrayList<>();
        topology.regions().forEach(r -> changes.add(new AddressSpaceActor.AddRegion(r)));
        ContextAsk.ask(getContext(), AddressSpaceActor.CommitResult.class, memory, STEP_TIMEOUT,
                replyTo -> new AddressSpaceActor.Commit(changes, replyTo),
                (result, failure) -> result != null ? new Committed(result) : new StepTimedOut("memory commit"));
        return this;
    }

    private Behavior<Command> onCommitted(Committed committed) {
        if (committed.result() instanceof AddressSpaceActor.CommitFailed failed) {
            return failStart("the memory map was refused by " + failed.listener() + ": " + failed.reason());
        }
        if (topology.guest().isPresent()) {
            VmTopology.Guest guest = topology.guest().get();
            try {
                linuxLoaded = BootLayoutStep.write(guest, guestMemory.current()).orElse(null);
            } catch (RuntimeException e) {
                return failStart((guest.linux().isPresent() ? "cannot load the Linux guest: "
                        : "cannot lay out the guest's boot memory: ") + e.getMessage());
            }
        }
        long blockSize = topology.containers().stream().filter(c -> c.discard() == DiscardMode.COORDINATED)
                .mapToLong(VmTopology.Container::discardBlockSize).max()
                .orElse(VfioContainerActor.DEFAULT_DISCARD_BLOCK_SIZE);
        discardManager = getContext().spawn(DiscardManager.create(topology.name() + "-discard",
                DiscardManager.Settings.withDrainTimeout(topology.balloon().orElse(BalloonSettings.DEFAULT)
                        .drainTimeout()).withBlockSize(blockSize)
                        .withReleaseTimeout(DeviceTimeouts.of(getContext().getSystem()).containerRelease()),
                Optional.of(getContext().messageAdapter(DiscardManager.FailStop.class, DiscardFailStop::new))),
                "discard", DiscardManager.DISPATCHER);
        topology.balloon().ifPresent(settings -> balloon = Optional.of(getContext().spawn(
                BalloonActor.create(topology.name() + "-balloon", memory, settings, discardManager), "balloon",
                BalloonActor.DISPATCHER)));
        for (VmTopology.Container c : topology.containers()) {
            containers.put(c.name(), getContext().spawn(VfioContainerActor.create(c.name(), memory, c.backend(),
                    c.discard(), c.discardBlockSize()), "container-" + c.name(), VfioContainerActor.DISPATCHER));
        }
        for (VmTopology.Group g : topology.groups()) {
            DiscardMode mode = g.discard().orElseGet(() -> topology.containers().stream()
                    .filter(c -> c.name().equals(g.container())).findFirst()
                    .map(VmTopology.Container::discard).orElse(DiscardMode.INHIBIT));
            groups.put(g.id(), getContext().spawn(VfioGroupActor.create(g.id(), mode, discardManager),
                    "group-" + g.id()));
            if (g.attachAtStart()) {
                toAttach.add(g);
            }
        }
        return attachNext();
    }

    private Behavior<Command> attachNext() {
        VmTopology.Group next = toAttach.poll();
        if (next == null) {
            if (topology.guest().isPresent()) {
                try {
                    startGuest(topology.guest().get());
                } catch (RuntimeException e) {
                    return failStart("cannot start the vCPUs: " + e.getMessage());
                }
            } else if (topology.scripted().isPresent()) {
                try {
                    startScriptedGuest(topology.scripted().get());
                } catch (RuntimeException e) {
                    return failStart("cannot start the scripted guest: " + e.getMessage());
                }
            }
            state = State.RUNNING;
            getContext().getLog().info("VM {} is running: {} bytes of RAM, {} containers, {} groups", topology.name(),
                    topology.ramBytes(), containers.size(), groups.size());
            starter.tell(new Started(topology.name(), components()));
            starter = null;
            return this;
        }
        ActorRef<VfioContainerActor.Command> container = containers.get(next.container());
        ContextAsk.ask(getContext(), VfioGroupActor.AttachResult.class, groups.get(next.id()), STEP_TIMEOUT,
                replyTo -> new VfioGroupActor.Attach(container, next.container(), replyTo),
                (result, failure) -> result != null ? new GroupAttached(next.id(), result)
                        : new StepTimedOut("attach of group " + next.id()));
        return this;
    }

    /** Spawn the port and MMIO devices, create the vCPUs in long mode and start vCPU 0. */
    private void startGuest(VmTopology.Guest guest) {
        if (guest.linux().isPresent()) {
            ActorRef<io.actovisor.actors.linux.LinuxGuestEvent> linuxObserver = getContext().messageAdapter(
                    io.actovisor.actors.linux.LinuxGuestEvent.class, LinuxReported::new);
            ActorRef<VcpuHandle.Event> observer = getContext().messageAdapter(VcpuHandle.Event.class,
                    VcpuReported::new);
            vcpus.addAll(LinuxGuestStart.start(getContext(), topology, guest, kvm, kvmVm, linuxLoaded, components(), devices,
                    linuxObserver, observer));
            guestInfo = new GuestInfo("linux", guest.linux().get().kernel().source(), GuestState.RUNNING,
                    Optional.empty());
            return;
        }
        DeviceWiring.spawnDevices(getContext(), topology, this::components, devices);
        IoMap map = DeviceWiring.firmwareIoMap(getContext(), topology, guest.serial(), devices);
        ActorRef<VcpuHandle.Event> observer = getContext().messageAdapter(VcpuHandle.Event.class, VcpuReported::new);
        DeviceTimeouts timeouts = DeviceTimeouts.of(getContext().getSystem());
        for (int id = 0; id < guest.vcpus(); id++) {
            KvmVcpu vcpu = kvmVm.createVcpu(id);
            try {
                BootLayout.enterLongMode(vcpu, kvm.supportedCpuid());
            } catch (RuntimeException e) {
                vcpu.close();
                throw e;
            }
            vcpus.add(VcpuHandle.spawn(vcpu, map, observer, getContext().getSystem().scheduler(), timeouts,
                    topology.name() + "-" + id));
        }
        vcpus.get(0).start();
        guestInfo = new GuestInfo("firmware", guest.program(), GuestState.RUNNING, Optional.empty());
        getContext().getLog().info("VM {}: vCPU 0 started the guest program '{}'", topology.name(), guest.program());
    }

    /** Spawn the MMIO devices and the scripted guest that drives them (no KVM, no vCPU threads). */
    private void startScriptedGuest(VmTopology.ScriptedGuest scripted) {
        DeviceWiring.spawnDevices(getContext(), topology, this::components, devices);
        List<ScriptedGuestActor.Device> reachable = DeviceWiring.scriptedDevices(topology, devices);
        var program = scripted.program().get();
        getContext().spawn(ScriptedGuestActor.create(topology.name(), guestMemory,
                scripted.layout(), reachable, program, getContext().messageAdapter(ScriptedGuestActor.Event.class,
                        ScriptedGuestReported::new)), "guest");
        guestInfo = new GuestInfo("scripted", program.name(), GuestState.RUNNING, Optional.empty());
        getContext().getLog().info("VM {}: the scripted guest runs program '{}'", topology.name(), program.name());
    }

    private Behavior<Command> onScriptedGuestReported(ScriptedGuestReported reported) {
        if (reported.event() instanceof ScriptedGuestActor.Failed failed) {
            guestInfo = new GuestInfo("scripted", failed.program(), GuestState.FAILED, Optional.of(failed.reason()));
            getContext().getLog().error("VM {}: the scripted guest failed: {}; the VM keeps running without it",
                    topology.name(), failed.reason());
            return this;
        }
        ScriptedGuestActor.Halted halted = (ScriptedGuestActor.Halted) reported.event();
        guestInfo = new GuestInfo("scripted", halted.program(), GuestState.HALTED, Optional.empty());
        getContext().getLog().info("VM {}: the scripted guest halted after {} rounds; shutting down", topology.name(),
                halted.rounds());
        return stopAll();
    }

    private Behavior<Command> onGetBalloonDevice(GetBalloonDevice get) {
        get.replyTo().tell(new BalloonDevice(topology.devices().stream()
                .filter(d -> d.role() == VmTopology.Device.Role.VIRTIO_BALLOON)
                .map(d -> devices.get(d.name())).filter(Objects::nonNull).findFirst()));
        return this;
    }

    private Behavior<Command> onGetGuest(GetGuest get) {
        get.replyTo().tell(guestInfo);
        return this;
    }

    private Behavior<Command> onVcpuReported(VcpuReported reported) {
        if (reported.event() instanceof VcpuHandle.Halted halted) {
            getContext().getLog().info("VM {}: the guest halted (vCPU {}); shutting down", topology.name(),
                    halted.vcpu());
        } else if (reported.event() instanceof VcpuHandle.Failed failed) {
            getContext().getLog().error("VM {}: vCPU {} failed: {}; shutting down", topology.name(), failed.vcpu(),
                    failed.reason());
        }
        return stopAll();
    }

    private Behavior<Command> onLinuxReported(LinuxReported reported) {
        getContext().getSystem().eventStream().tell(new org.apache.pekko.actor.typed.eventstream.EventStream.Publish<>(
                reported.event()));
        if (reported.event() instanceof io.actovisor.actors.linux.LinuxGuestEvent.Panicked panicked) {
            getContext().getLog().error("VM {}: the guest kernel panicked; shutting down. Last console lines:\n{}",
                    topology.name(), String.join("\n", panicked.lastLines()));
        } else if (reported.event() instanceof io.actovisor.actors.linux.LinuxGuestEvent.ResetRequested) {
            getContext().getLog().info("VM {}: the guest rebooted (reset line); shutting down", topology.name());
        } else {
            return this;
        }
        return stopAll();
    }

    /** Kick every vCPU out of KVM_RUN (their threads must be free to stop), then stop the VM and its children. */
    private Behavior<Command> stopAll() {
        state = State.STOPPING;
        vcpus.forEach(VcpuHandle::stop);
        return Behaviors.stopped();
    }

    private Behavior<Command> onGroupAttached(GroupAttached attached) {
        if (attached.result() instanceof VfioGroupActor.AttachFailed failed) {
            return failStart("VFIO group " + attached.groupId() + " could not attach: " + failed.reason());
        }
        return attachNext();
    }

    private Behavior<Command> onStepTimedOut(StepTimedOut timeout) {
        if (state != State.STARTING) {
            return this;
        }
        return failStart("the " + timeout.step() + " did not complete within " + STEP_TIMEOUT.toSeconds() + " s");
    }

    private Behavior<Command> failStart(String reason) {
        getContext().getLog().error("VM {} failed to start: {}", topology.name(), reason);
        starter.tell(new StartFailed(topology.name(), reason));
        starter = null;
        return stopAll();
    }

    private Behavior<Command> onPause(Pause pause) {
        if (state != State.RUNNING) {
            pause.replyTo().tell(new ActionRefused(state, "only a running VM can be paused; VM "
                    + topology.name() + " is " + state));
            return this;
        }
        state = State.PAUSED;
        vcpus.forEach(VcpuHandle::pause);
        pause.replyTo().tell(new ActionDone(state));
        return this;
    }

    private Behavior<Command> onDiscardFailStop(DiscardFailStop stop) {
        getContext().getLog().error("VM {} is paused (fail-stop): {}", topology.name(), stop.failStop().reason());
        if (state == State.RUNNING) {
            state = State.PAUSED;
            vcpus.forEach(VcpuHandle::pause);
        }
        return this;
    }

    private Behavior<Command> onResume(Resume resume) {
        if (state != State.PAUSED) {
            resume.replyTo().tell(new ActionRefused(state, "only a paused VM can be resumed; VM "
                    + topology.name() + " is " + state));
            return this;
        }
        state = State.RUNNING;
        vcpus.forEach(VcpuHandle::resume);
        resume.replyTo().tell(new ActionDone(state));
        return this;
    }

    private Behavior<Command> onShutdown(Shutdown shutdown) {
        getContext().getLog().info("VM {} shutting down", topology.name());
        state = State.STOPPING;
        shutdown.replyTo().tell(new ActionDone(state));
        if (starter != null) {
            starter.tell(new StartFailed(topology.name(), "shut down while starting"));
        }
        return stopAll();
    }

    private Behavior<Command> onGetInfo(GetInfo get) {
        get.replyTo().tell(new VmInfo(topology.name(), state, topology.ramBytes(), topology.regions().size(),
                state == State.RUNNING || state == State.PAUSED ? Optional.of(components()) : Optional.empty()));
        return this;
    }

    /** mincore over the RAM regions' host memory: one syscall per region, no page is touched. */
    private Behavior<Command> onGetResident(GetResident get) {
        long resident = 0;
        if (!memoryClosed) {
            for (io.actovisor.memory.MemoryRegion r : topology.regions()) {
                if (r.kind() == RegionKind.RAM && r.backing().isPresent()) {
                    resident += r.backing().get().memory().residentBytes(AddressRange.of(
                            r.backing().get().hostAddress(0).value(), r.range().size()));
                }
            }
        }
        get.replyTo().tell(new Resident(topology.name(), resident));
        return this;
    }

    private Components components() {
        return new Components(memory, balloon, containers, groups, vcpus, devices, discardManager, guestMemory);
    }

    /** Children have stopped (their IOMMUs closed, pins released) before this runs: now the memory can go. */
    private Behavior<Command> onPostStop() {
        if (!memoryClosed) {
            memoryClosed = true;
            // Guest RAM goes away next: every vCPU thread must be out of the guest and its fd closed first. Kicked
            // threads end at once (their device waits end with the stop), so this wait is short.
            for (VcpuHandle vcpu : vcpus) {
                if (!vcpu.awaitStopped(VCPU_STOP_WAIT)) {
                    getContext().getLog().error("VM {}: vCPU {} did not stop within {} s", topology.name(),
                            vcpu.id(), VCPU_STOP_WAIT.toSeconds());
                }
            }
            if (kvmVm != null) {
                kvmVm.close();
            }
            if (kvm != null) {
                kvm.close();
            }
            topology.memory().forEach(HostMemory::close);
            getContext().getLog().info("VM {} stopped; {} host memory blocks released", topology.name(),
                    topology.memory().size());
        }
        return this;
    }
}
