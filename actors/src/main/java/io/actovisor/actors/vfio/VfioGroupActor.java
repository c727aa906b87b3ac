package io.actovisor.actors.vfio;

import io.actovisor.actors.balloon.BalloonActor;
import java.util.Objects;
import java.util.Optional;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;
import org.apache.pekko.actor.typed.javadsl.StashBuffer;

/**
 * One VFIO IOMMU group. {@link Attach} takes a balloon inhibit first and then joins the container (which pins and
 * maps guest RAM); {@link Detach} leaves the container (unmap, unpin) and then releases the inhibit. That order,
 * QEMU's, means no instant exists where pages are pinned and the balloon may discard them. A group declared
 * <b>balloon-compatible</b> (a device that pins on demand, such as a mediated device) takes no inhibit.
 *
 * <p>While attached the group watches its container: if the container stops, its PostStop has unpinned everything,
 * and the group releases its inhibit and counts itself detached. If the group itself stops or crashes, the balloon
 * (watching it) and the container (watching it) clean up after it. Commands that arrive during an attach or detach
 * wait until it completes.
 */
public final class VfioGroupActor extends AbstractBehavior<VfioGroupActor.Command> {

    /** What a group accepts. */
    public interface Command {
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

    /** The group is attached and, unless balloon-compatible, inhibits the balloon. */
    public record Attached(String groupId, String container, boolean inhibiting) implements AttachResult {
    }

    /** The group is not attached and holds no inhibit. */
    public record AttachFailed(String groupId, String reason) implements AttachResult {
    }

    /** Detach from the current container. */
    public record Detach(ActorRef<DetachResult> replyTo) implements Command {
    }

    /** The outcome of {@link Detach}. */
    public sealed interface DetachResult permits Detached, DetachFailed {
    }

    /** The group left its container and released its inhibit. */
    public record Detached(String groupId, String container) implements DetachResult {
    }

    /** The group was not attached. */
    public record DetachFailed(String groupId, String reason) implements DetachResult {
    }

    /** Ask for the group's state. */
    public record GetState(ActorRef<State> replyTo) implements Command {
    }

    /** A group's state: the container it is attached to, if any, and whether it holds an inhibit. */
    public record State(String groupId, boolean balloonCompatible, Optional<String> container, boolean inhibiting) {
    }

    private record InhibitReplied(BalloonActor.InhibitResult result) implements Command {
    }

    private record ContainerAttachReplied(VfioContainerActor.AttachResult result) implements Command {
    }

    private record ContainerDetachReplied(VfioContainerActor.DetachResult result) implements Command {
    }

    private record ContainerStopped(ActorRef<VfioContainerActor.Command> container) implements Command {
    }

    private static final int STASH_CAPACITY = 1_000;

    private final String groupId;
    private final boolean balloonCompatible;
    private final ActorRef<BalloonActor.Command> balloon;
    private final StashBuffer<Command> stash;
    private final ActorRef<BalloonActor.InhibitResult> inhibitAdapter;
    private final ActorRef<VfioContainerActor.AttachResult> attachAdapter;
    private final ActorRef<VfioContainerActor.DetachResult> detachAdapter;
    private ActorRef<VfioContainerActor.Command> container;
    private String containerName;
    private boolean attached;
    private boolean inhibiting;
    /** The attach, detach or container-stop cleanup in progress, if any. */
    private Command pending;
    private Phase phase = Phase.IDLE;
    /** The answer to {@link #pending}, sent when it finishes. */
    private Object outcome;

    /** Where the group is in an attach or detach. */
    private enum Phase {
        IDLE,
        INHIBITING,
        JOINING,
        LEAVING,
        RELEASING
    }

    private VfioGroupActor(ActorContext<Command> context, String groupId, boolean balloonCompatible,
            ActorRef<BalloonActor.Command> balloon, StashBuffer<Command> stash) {
        super(context);
        this.groupId = groupId;
        this.balloonCompatible = balloonCompatible;
        this.balloon = balloon;
        this.stash = stash;
        this.inhibitAdapter = context.messageAdapter(BalloonActor.InhibitResult.class, InhibitReplied::new);
        this.attachAdapter = context.messageAdapter(VfioContainerActor.AttachResult.class,
                ContainerAttachReplied::new);
        this.detachAdapter = context.messageAdapter(VfioContainerActor.DetachResult.class,
                ContainerDetachReplied::new);
    }

    /**
     * The group {@code groupId} (for {@code vfio-type1}, the number of {@code /dev/vfio/<id>}), inhibiting
     * {@code balloon} while attached unless {@code balloonCompatible}.
     */
    public static Behavior<Command> create(String groupId, boolean balloonCompatible,
            ActorRef<BalloonActor.Command> balloon) {
        return Behaviors.withStash(STASH_CAPACITY, stash -> Behaviors.setup(context ->
                new VfioGroupActor(context, groupId, balloonCompatible, balloon, stash)));
    }

    @Override
    public Receive<Command> createReceive() {
        return newReceiveBuilder()
                .onMessage(Attach.class, this::onAttach)
                .onMessage(Detach.class, this::onDetach)
                .onMessage(GetState.class, this::onGetState)
                .onMessage(InhibitReplied.class, this::onInhibitReplied)
                .onMessage(ContainerAttachReplied.class, this::onContainerAttachReplied)
                .onMessage(ContainerDetachReplied.class, this::onContainerDetachReplied)
                .onMessage(ContainerStopped.class, this::onContainerStopped)
                .build();
    }

    private Behavior<Command> onAttach(Attach attach) {
        if (pending != null) {
            stash.stash(attach);
            return this;
        }
        if (attached) {
            attach.replyTo().tell(new AttachFailed(groupId, "group " + groupId + " is already attached to container "
                    + containerName));
            return this;
        }
        pending = attach;
        container = attach.container();
        containerName = attach.containerName();
        // Watched from the start, so a container that stops mid-attach fails the attach instead of hanging it.
        getContext().watchWith(container, new ContainerStopped(container));
        if (balloonCompatible) {
            join();
        } else {
            phase = Phase.INHIBITING;
            balloon.tell(new BalloonActor.Inhibit(getContext().getSelf(), "vfio-group:" + groupId,
                    Optional.of(container), inhibitAdapter));
        }
        return this;
    }

    private void join() {
        phase = Phase.JOINING;
        container.tell(new VfioContainerActor.AttachGroup(groupId, getContext().getSelf(), attachAdapter));
    }

    private Behavior<Command> onInhibitReplied(InhibitReplied replied) {
        BalloonActor.InhibitResult result = replied.result();
        if (phase == Phase.INHIBITING) {
            if (result instanceof BalloonActor.InhibitHeld) {
                inhibiting = true;
                join();
                return this;
            }
            return failAttach("the balloon refused the inhibit: "
                    + ((BalloonActor.InhibitRefused) result).reason());
        }
        if (phase == Phase.RELEASING) {
            if (result instanceof BalloonActor.InhibitRefused refused) {
                getContext().getLog().warn("Group {}: the balloon refused the release: {}", groupId,
                        refused.reason());
            }
            inhibiting = false;
            return finish();
        }
        getContext().getLog().debug("Group {} ignores an unexpected balloon reply {}", groupId, result);
        return this;
    }

    private Behavior<Command> onContainerAttachReplied(ContainerAttachReplied replied) {
        if (phase != Phase.JOINING) {
            return this;
        }
        if (replied.result() instanceof VfioContainerActor.GroupAttached) {
            attached = true;
            outcome = new Attached(groupId, containerName, inhibiting);
            return finish();
        }
        return failAttach(((VfioContainerActor.GroupAttachFailed) replied.result()).reason());
    }

    /** The attach failed: forget the container, release the inhibit if taken, then answer. */
    private Behavior<Command> failAttach(String reason) {
        getContext().unwatch(container);
        outcome = new AttachFailed(groupId, reason);
        return releaseThenFinish();
    }

    private Behavior<Command> releaseThenFinish() {
        if (inhibiting) {
            phase = Phase.RELEASING;
            balloon.tell(new BalloonActor.Release(getContext().getSelf(), inhibitAdapter));
            return this;
        }
        return finish();
    }

    private Behavior<Command> onDetach(Detach detach) {
        if (pending != null) {
            stash.stash(detach);
            return this;
        }
        if (!attached) {
            detach.replyTo().tell(new DetachFailed(groupId, "group " + groupId + " is not attached"));
            return this;
        }
        pending = detach;
        phase = Phase.LEAVING;
        getContext().unwatch(container);
        container.tell(new VfioContainerActor.DetachGroup(groupId, detachAdapter));
        return this;
    }

    private Behavior<Command> onContainerDetachReplied(ContainerDetachReplied replied) {
        if (phase != Phase.LEAVING) {
            return this;
        }
        if (replied.result() instanceof VfioContainerActor.GroupDetachFailed failed) {
            getContext().getLog().warn("Container {} did not know group {}: {}", containerName, groupId,
                    failed.reason());
        }
        attached = false;
        outcome = new Detached(groupId, containerName);
        return releaseThenFinish();
    }

    private Behavior<Command> onContainerStopped(ContainerStopped stopped) {
        if (!stopped.container().equals(container)) {
            return this;
        }
        if (pending instanceof Attach && phase != Phase.RELEASING) {
            return failAttach("container " + containerName + " stopped during the attach");
        }
        if (!attached || pending != null) {
            return this;
        }
        // The container's PostStop closed its IOMMU: nothing of ours is pinned any more.
        getContext().getLog().warn("Container {} of group {} stopped; the group is detached", containerName, groupId);
        attached = false;
        pending = stopped;
        outcome = null;
        return releaseThenFinish();
    }

    private Behavior<Command> finish() {
        Command done = pending;
        Object result = outcome;
        pending = null;
        outcome = null;
        phase = Phase.IDLE;
        if (!attached) {
            container = null;
            containerName = null;
        }
        if (done instanceof Attach attach) {
            attach.replyTo().tell((AttachResult) result);
        } else if (done instanceof Detach detach) {
            detach.replyTo().tell((DetachResult) result);
        }
        return stash.unstashAll(this);
    }

    private Behavior<Command> onGetState(GetState get) {
        get.replyTo().tell(new State(groupId, balloonCompatible, attached ? Optional.of(containerName)
                : Optional.empty(), inhibiting));
        return this;
    }
}
