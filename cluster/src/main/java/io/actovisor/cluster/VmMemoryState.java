package io.actovisor.cluster;

import io.actovisor.actors.balloon.BalloonActor;
import io.actovisor.actors.discard.DiscardManager;
import io.actovisor.actors.discard.DiscardState;
import io.actovisor.actors.vm.VmActor;
import java.time.Duration;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Scheduler;
import org.apache.pekko.actor.typed.javadsl.AskPattern;

/**
 * Reads one VM's memory state from its own actors (the {@link VmActor}, its {@link DiscardManager} and its
 * {@link BalloonActor}): the one place where the cluster decides what is pinned, coordinated-reclaimable,
 * balloonable and given back.
 *
 * <p>A VM whose discard manager has a holder that disables discards (a VFIO group in {@code discard = inhibit}, or a
 * {@code coordinated} one counted as uncoordinated because the guest driver did not negotiate
 * {@code VIRTIO_BALLOON_F_MUST_TELL_HOST}) is pinned, all of its RAM, unless its balloon runs with
 * {@code unsafe-ignore-inhibitor}. A VM with a balloon that is not pinned is balloonable; if its holders are all
 * coordinated (none fallen back), its RAM is also coordinated-reclaimable: the balloon reclaims it in blocks that its
 * containers unmap first. A VM without a balloon is neither balloonable nor reclaimable.
 */
public final class VmMemoryState {
    private VmMemoryState() {
    }

    /**
     * One VM's reading.
     *
     * @param state                       the VM's lifecycle state
     * @param pinnedBytes                 its RAM if a holder disables discards, else 0
     * @param coordinatedReclaimableBytes its RAM if it has a balloon and holders that are all coordinated, else 0
     * @param balloonableBytes            its RAM if it has a balloon and is not pinned, else 0
     * @param actualBytes                 the balloon's actual size (pages the guest gave back)
     * @param targetBytes                 the balloon's target
     * @param residentBytes               bytes of the VM's RAM resident in host memory now (the VM's own mincore
     *                                    reading): drops when the guest gives pages back
     */
    public record Reading(String state, long ramBytes, long pinnedBytes, long coordinatedReclaimableBytes,
            long balloonableBytes, long actualBytes, long targetBytes, long residentBytes) {

        /** This reading with {@code bytes} resident. */
        public Reading withResident(long bytes) {
            return new Reading(state, ramBytes, pinnedBytes, coordinatedReclaimableBytes, balloonableBytes,
                    actualBytes, targetBytes, bytes);
        }
    }

    /** Ask {@code vm} (its discard manager, its balloon and its resident memory) for its state. */
    public static CompletionStage<Reading> read(ActorRef<VmActor.Command> vm, Duration timeout, Scheduler scheduler) {
        CompletionStage<VmActor.Resident> resident = AskPattern.<VmActor.Command, VmActor.Resident>ask(vm,
                VmActor.GetResident::new, timeout, scheduler);
        return readState(vm, timeout, scheduler).thenCombine(resident, (r, res) -> r.withResident(
                res.residentBytes()));
    }

    private static CompletionStage<Reading> readState(ActorRef<VmActor.Command> vm, Duration timeout,
            Scheduler scheduler) {
        return AskPattern.<VmActor.Command, VmActor.VmInfo>ask(vm, VmActor.GetInfo::new, timeout, scheduler)
                .thenCompose(info -> {
                    if (info.components().isEmpty()) {
                        return CompletableFuture.completedFuture(new Reading(info.state().name(), info.ramBytes(),
                                0, 0, 0, 0, 0, 0));
                    }
                    VmActor.Components components = info.components().get();
                    CompletionStage<DiscardState> discard = AskPattern.<DiscardManager.Command, DiscardState>ask(
                            components.discardManager(), DiscardManager.GetState::new, timeout, scheduler);
                    CompletionStage<Optional<BalloonActor.BalloonStatus>> balloon = components.balloon()
                            .map(b -> AskPattern.<BalloonActor.Command, BalloonActor.BalloonStatus>ask(b,
                                    BalloonActor.GetStatus::new, timeout, scheduler).thenApply(Optional::of))
                            .orElseGet(() -> CompletableFuture.completedFuture(Optional.empty()));
                    return discard.thenCombine(balloon, (d, b) -> of(info.state().name(), info.ramBytes(), d, b));
                });
    }

    /**
     * The reading of a VM in {@code state} with {@code ramBytes} of RAM, its discard state and balloon status
     * (resident bytes 0: {@link Reading#withResident} adds them).
     */
    public static Reading of(String state, long ramBytes, DiscardState discard,
            Optional<BalloonActor.BalloonStatus> balloon) {
        boolean disabled = !discard.disablingHolders().isEmpty();
        boolean pinned = disabled && !balloon.map(BalloonActor.BalloonStatus::unsafeIgnoreInhibitor).orElse(false);
        boolean coordinated = balloon.isPresent() && !disabled && discard.coordinatedHolders() > 0;
        boolean balloonable = balloon.isPresent() && !pinned;
        return new Reading(state, ramBytes, pinned ? ramBytes : 0, coordinated ? ramBytes : 0,
                balloonable ? ramBytes : 0, balloon.map(BalloonActor.BalloonStatus::actualBytes).orElse(0L),
                balloon.map(BalloonActor.BalloonStatus::targetBytes).orElse(0L), 0);
    }
}
