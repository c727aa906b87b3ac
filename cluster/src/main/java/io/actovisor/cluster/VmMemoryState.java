package io.actovisor.cluster;

import io.actovisor.actors.balloon.BalloonActor;
import io.actovisor.actors.vm.VmActor;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Scheduler;
import org.apache.pekko.actor.typed.javadsl.AskPattern;

/**
 * Reads one VM's memory state from its own actors (the {@link VmActor} and its {@link BalloonActor}): the one place
 * where the cluster decides what is pinned, balloonable and given back. When the discard manager lands, this class
 * reads its {@code DiscardState} instead of the balloon's inhibitor count, and fills in the coordinated-reclaimable
 * figure; nothing else in the cluster module needs to change.
 *
 * <p>Today: a VM whose balloon holds inhibitors (a VFIO group that disables discards is attached) is pinned, all of
 * its RAM; a VM with a balloon and no inhibitor is balloonable; a VM without a balloon is neither (its RAM is
 * committed and not reclaimable).
 */
public final class VmMemoryState {
    private VmMemoryState() {
    }

    /**
     * One VM's reading.
     *
     * @param state                       the VM's lifecycle state
     * @param coordinatedReclaimableBytes 0: coordinated discards do not exist yet
     * @param actualBytes                 the balloon's actual size (pages the guest gave back)
     * @param targetBytes                 the balloon's target
     */
    public record Reading(String state, long ramBytes, long pinnedBytes, long coordinatedReclaimableBytes,
            long balloonableBytes, long actualBytes, long targetBytes) {
    }

    /** Ask {@code vm} (and its balloon) for its state. */
    public static CompletionStage<Reading> read(ActorRef<VmActor.Command> vm, Duration timeout, Scheduler scheduler) {
        return AskPattern.<VmActor.Command, VmActor.VmInfo>ask(vm, VmActor.GetInfo::new, timeout, scheduler)
                .thenCompose(info -> {
                    var balloon = info.components().flatMap(VmActor.Components::balloon);
                    if (balloon.isEmpty()) {
                        return CompletableFuture.completedFuture(new Reading(info.state().name(), info.ramBytes(),
                                0, 0, 0, 0, 0));
                    }
                    return AskPattern.<BalloonActor.Command, BalloonActor.BalloonStatus>ask(balloon.get(),
                            BalloonActor.GetStatus::new, timeout, scheduler).thenApply(status -> {
                                boolean pinned = status.inhibitors() > 0 && !status.unsafeIgnoreInhibitor();
                                return new Reading(info.state().name(), info.ramBytes(),
                                        pinned ? info.ramBytes() : 0, 0, pinned ? 0 : info.ramBytes(),
                                        status.actualBytes(), status.targetBytes());
                            });
                });
    }
}
