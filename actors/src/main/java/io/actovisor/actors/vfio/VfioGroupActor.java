package io.actovisor.actors.vfio;

import io.actovisor.actors.discard.DiscardManager;
import io.actovisor.actors.discard.DiscardMode;
import java.util.Objects;
import java.util.Optional;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.BehaviorBuilder;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.StashBuffer;

/**
 * One VFIO IOMMU group. {@link Attach} first asks the container to describe itself (its name, and where it answers
 * the discard manager about pins), registers with the {@link DiscardManager} in the kind the group's
 * {@link DiscardMode} gives, and only then joins the container (which pins and maps guest RAM); {@link Detach}
 * leaves the container (unmap, unpin) and then releases the registration. That order, QEMU's, means no instant
 * exists where pages are pinned and a discard may run. A group in {@code on-demand} mode (a device that pins on
 * demand, such as a mediated device) does not register.
 *
 * <p>One behavior per state: idle, describing, inhibiting (registering), joining, attached, leaving and releasing,
 * each carrying the request it serves. From the attach until the container answers the detach the group watches
 * its container: if the container stops, its PostStop has unpinned everything, and the group releases its
 * registration and counts itself detached (a detach in progress is answered {@link Detached}). If the group
 * itself stops or crashes, the discard manager and the container (both watching it) clean up after it. Attach and
 * detach requests that arrive during an attach or detach wait until it completes.
 */
public final class VfioGroupActor {

    /** What a group accepts. */
    public sealed interface Command permits Attach, Detach, GetState, Described, RegistrationReplied,
            ContainerAttachReplied, ContainerDetachReplied, ContainerStopped {
    }

    /** Attach to {@code container}. */
    public record Attach(ActorRef<VfioContainerActor.Command> container, String containerName,
            ActorRef<AttachResult> replyTo) implements Command {
        public Attach {
            Objects.requireNonNull(container, "container");
            Objects.requireNonNull(containerName, "containerName");
            Objects.requireNonNull(replyTo, "replyTo");
        }
    }

    /** The outcome of {@link Attach}. */
    public sealed interface AttachResult permits Attached, AttachFailed {
    }

    /** The group is attached and, unless on-demand, registered with the discard manager. */
    public record Attached(String groupId, String container, boolean inhibiting) implements AttachResult {
    }

    /** The group is not attached and holds no registration. */
    public record AttachFailed(String groupId, String reason) implements AttachResult {
    }

    /** Detach from the current container. */
    public record Detach(ActorRef<DetachResult> replyTo) implements Command {
    }

    /** The outcome of {@link Detach}. */
    public sealed interface DetachResult permits Detached, DetachFailed {
    }

    /** The group left its container and released its registration. */
    public record Detached(String groupId, String container) implements DetachResult {
    }

    /** The group was not attached. */
    public record DetachFailed(String groupId, String reason) implements DetachResult {
    }

    /** Ask for the group's state. */
    public record GetState(ActorRef<State> replyTo) implements Command {
    }

    /**
     * A group's state: its discard mode, the container it is attached to, if any, and whether it is registered with
     * the discard manager.
     */
    public record State(String groupId, DiscardMode mode, Optional<String> container, boolean inhibiting) {
        /** Whether the device pins on demand and never disables discards. */
        public boolean balloonCompatible() {
            return mode == DiscardMode.ON_DEMAND;
        }
    }

    private record Described(VfioContainerActor.Description description) implements Command {
    }

    private record RegistrationReplied(DiscardManager.RegistrationResult result) implements Command {
    }

    private record ContainerAttachReplied(VfioContainerActor.AttachResult result) implements Command {
    }

    private record ContainerDetachReplied(VfioContainerActor.DetachResult result) implements Command {
    }

    private record ContainerStopped(ActorRef<VfioContainerActor.Command> container) implements Command {
    }

    /** What to answer once the registration is released: the failed attach, the detach, or nobody. */
    private sealed interface Completion permits AnswerAttach, AnswerDetach, AnswerNobody {
    }

    private record AnswerAttach(Attach attach, AttachFailed failed) implements Completion {
    }

    private record AnswerDetach(Detach detach, Detached detached) implements Completion {
    }

    private record AnswerNobody() implements Completion {
    }

    private static final int STASH_CAPACITY = 1_000;

    private final ActorContext<Command> context;
    private final String groupId;
    private final DiscardMode mode;
    private final ActorRef<DiscardManager.Command> discardManager;
    private final StashBuffer<Command> stash;
    private final ActorRef<VfioContainerActor.Description> describedAdapter;
    private final ActorRef<DiscardManager.RegistrationResult> registrationAdapter;
    private final ActorRef<VfioContainerActor.AttachResult> attachAdapter;
    private final ActorRef<VfioContainerActor.DetachResult> detachAdapter;

    private VfioGroupActor(ActorContext<Command> context, String groupId, DiscardMode mode,
            ActorRef<DiscardManager.Command> discardManager, StashBuffer<Command> stash) {
        this.context = context;
        this.groupId = groupId;
        this.mode = mode;
        this.discardManager = discardManager;
        this.stash = stash;
        this.describedAdapter = context.messageAdapter(VfioContainerActor.Description.class, Described::new);
        this.registrationAdapter = context.messageAdapter(DiscardManager.RegistrationResult.class,
                RegistrationReplied::new);
        this.attachAdapter = context.messageAdapter(VfioContainerActor.AttachResult.class,
                ContainerAttachReplied::new);
        this.detachAdapter = context.messageAdapter(VfioContainerActor.DetachResult.class,
                ContainerDetachReplied::new);
    }

    /**
     * The group {@code groupId} (for {@code vfio-type1}, the number of {@code /dev/vfio/<id>}) in discard mode
     * {@code mode}, registering with {@code discardManager} while attached unless on-demand.
     */
    public static Behavior<Command> create(String groupId, DiscardMode mode,
            ActorRef<DiscardManager.Command> discardManager) {
        Objects.requireNonNull(mode, "mode");
        return Behaviors.withStash(STASH_CAPACITY, stash -> Behaviors.setup(context ->
                new VfioGroupActor(context, groupId, mode, discardManager, stash).idle()));
    }

    /** Not attached, nothing in progress. */
    private Behavior<Command> idle() {
        return Behaviors.receive(Command.class)
                .onMessage(Attach.class, this::startAttach)
                .onMessage(Detach.class, detach -> {
                    detach.replyTo().tell(new DetachFailed(groupId, "group " + groupId + " is not attached"));
                    return Behaviors.same();
                })
                .onMessage(GetState.class, get -> state(get, Optional.empty(), false))
                .build();
    }

    private Behavior<Command> startAttach(Attach attach) {
        // Watched from the start, so a container that stops mid-attach fails the attach instead of hanging it.
        context.watchWith(attach.container(), new ContainerStopped(attach.container()));
        attach.container().tell(new VfioContainerActor.Describe(describedAdapter));
        return describing(attach);
    }

    /** Waiting for the container's description. */
    private Behavior<Command> describing(Attach attach) {
        return busy(Optional.empty(), false)
                .onMessage(Described.class, described -> onDescribed(attach, described.description()))
                .onMessage(ContainerStopped.class, stopped -> stoppedDuringAttach(attach, stopped, false))
                .build();
    }

    private Behavior<Command> onDescribed(Attach attach, VfioContainerActor.Description description) {
        if (description.mode() != mode) {
            context.unwatch(attach.container());
            attach.replyTo().tell(new AttachFailed(groupId, "group " + groupId + " declares discard = "
                    + mode.configName() + " but container " + description.container() + " has discard = "
                    + description.mode().configName() + "; all groups of a container share its IOMMU context and "
                    + "its discard mode"));
            return stash.unstashAll(idle());
        }
        Optional<DiscardManager.HolderKind> kind = mode.holderKind();
        if (kind.isEmpty()) {
            return join(attach, false);
        }
        discardManager.tell(new DiscardManager.Register(context.getSelf(), "vfio-group:" + groupId, kind.get(),
                Optional.of(description.pinOwner()), registrationAdapter));
        return inhibiting(attach);
    }

    /** Registering with the discard manager before any page is pinned. */
    private Behavior<Command> inhibiting(Attach attach) {
        return busy(Optional.empty(), false)
                .onMessage(RegistrationReplied.class, replied -> {
                    if (replied.result() instanceof DiscardManager.Registered) {
                        return join(attach, true);
                    }
                    context.unwatch(attach.container());
                    String reason = replied.result() instanceof DiscardManager.RegistrationRefused refused
                            ? refused.reason() : replied.result().toString();
                    attach.replyTo().tell(new AttachFailed(groupId, "the discard manager refused the registration: "
                            + reason));
                    return stash.unstashAll(idle());
                })
                .onMessage(ContainerStopped.class, stopped -> stoppedDuringAttach(attach, stopped, true))
                .build();
    }

    private Behavior<Command> join(Attach attach, boolean registered) {
        attach.container().tell(new VfioContainerActor.AttachGroup(groupId, context.getSelf(), attachAdapter));
        return joining(attach, registered);
    }

    /** Joining the container, which pins and maps guest RAM. */
    private Behavior<Command> joining(Attach attach, boolean registered) {
        return busy(Optional.empty(), registered)
                .onMessage(ContainerAttachReplied.class, replied -> {
                    if (replied.result() instanceof VfioContainerActor.GroupAttached) {
                        attach.replyTo().tell(new Attached(groupId, attach.containerName(), registered));
                        return stash.unstashAll(attached(attach.container(), attach.containerName(), registered));
                    }
                    return failAttach(attach, registered,
                            ((VfioContainerActor.GroupAttachFailed) replied.result()).reason());
                })
                .onMessage(ContainerStopped.class, stopped -> stoppedDuringAttach(attach, stopped, registered))
                .build();
    }

    private Behavior<Command> stoppedDuringAttach(Attach attach, ContainerStopped stopped, boolean registered) {
        if (!stopped.container().equals(attach.container())) {
            return Behaviors.same();
        }
        return failAttach(attach, registered, "container " + attach.containerName() + " stopped during the attach");
    }

    /** The attach failed: forget the container, release the registration if taken, then answer. */
    private Behavior<Command> failAttach(Attach attach, boolean registered, String reason) {
        context.unwatch(attach.container());
        AttachFailed failed = new AttachFailed(groupId, reason);
        if (registered) {
            return release(new AnswerAttach(attach, failed));
        }
        attach.replyTo().tell(failed);
        return stash.unstashAll(idle());
    }

    /** Attached to {@code container}; registered unless on-demand. */
    private Behavior<Command> attached(ActorRef<VfioContainerActor.Command> container, String containerName,
            boolean registered) {
        return Behaviors.receive(Command.class)
                .onMessage(Attach.class, attach -> {
                    attach.replyTo().tell(new AttachFailed(groupId, "group " + groupId + " is already attached to "
                            + "container " + containerName));
                    return Behaviors.same();
                })
                .onMessage(Detach.class, detach -> {
                    // Still watched: a container that stops before it answers must not leave the detach unanswered.
                    container.tell(new VfioContainerActor.DetachGroup(groupId, detachAdapter));
                    return leaving(detach, container, containerName, registered);
                })
                .onMessage(ContainerStopped.class, stopped -> {
                    if (!stopped.container().equals(container)) {
                        return Behaviors.same();
                    }
                    // The container's PostStop closed its IOMMU: nothing of ours is pinned any more.
                    context.getLog().warn("Container {} of group {} stopped; the group is detached", containerName,
                            groupId);
                    return registered ? release(new AnswerNobody()) : idle();
                })
                .onMessage(GetState.class, get -> state(get, Optional.of(containerName), registered))
                .build();
    }

    /** Leaving the container (unmap, unpin); done when it answers or stops. */
    private Behavior<Command> leaving(Detach detach, ActorRef<VfioContainerActor.Command> container,
            String containerName, boolean registered) {
        return busy(Optional.of(containerName), registered)
                .onMessage(ContainerDetachReplied.class, replied -> {
                    context.unwatch(container);
                    if (replied.result() instanceof VfioContainerActor.GroupDetachFailed failed) {
                        context.getLog().warn("Container {} did not know group {}: {}", containerName, groupId,
                                failed.reason());
                    }
                    return left(detach, containerName, registered);
                })
                .onMessage(ContainerStopped.class, stopped -> {
                    if (!stopped.container().equals(container)) {
                        return Behaviors.same();
                    }
                    // Its PostStop closed its IOMMU: nothing of ours is pinned any more, so the detach is done.
                    context.getLog().warn("Container {} of group {} stopped during the detach; the group is detached",
                            containerName, groupId);
                    return left(detach, containerName, registered);
                })
                .build();
    }

    /** The group is out of its container: release the registration if taken, then answer the detach. */
    private Behavior<Command> left(Detach detach, String containerName, boolean registered) {
        Detached detached = new Detached(groupId, containerName);
        if (registered) {
            return release(new AnswerDetach(detach, detached));
        }
        detach.replyTo().tell(detached);
        return stash.unstashAll(idle());
    }

    private Behavior<Command> release(Completion completion) {
        discardManager.tell(new DiscardManager.Unregister(context.getSelf(), registrationAdapter));
        return releasing(completion);
    }

    /** Releasing the registration after the pins are gone. */
    private Behavior<Command> releasing(Completion completion) {
        return busy(Optional.empty(), true)
                .onMessage(RegistrationReplied.class, replied -> {
                    if (replied.result() instanceof DiscardManager.RegistrationRefused refused) {
                        context.getLog().warn("Group {}: the discard manager refused the release: {}", groupId,
                                refused.reason());
                    }
                    if (completion instanceof AnswerAttach a) {
                        a.attach().replyTo().tell(a.failed());
                    } else if (completion instanceof AnswerDetach d) {
                        d.detach().replyTo().tell(d.detached());
                    }
                    return stash.unstashAll(idle());
                })
                .build();
    }

    /**
     * The common part of the transient states: attach and detach wait, state is answered, replies for other states
     * and stops of other containers are ignored.
     */
    private BehaviorBuilder<Command> busy(Optional<String> container, boolean registered) {
        return Behaviors.receive(Command.class)
                .onMessage(Attach.class, this::wait)
                .onMessage(Detach.class, this::wait)
                .onMessage(GetState.class, get -> state(get, container, registered));
    }

    private Behavior<Command> wait(Command command) {
        stash.stash(command);
        return Behaviors.same();
    }

    private Behavior<Command> state(GetState get, Optional<String> container, boolean registered) {
        get.replyTo().tell(new State(groupId, mode, container, registered));
        return Behaviors.same();
    }
}
