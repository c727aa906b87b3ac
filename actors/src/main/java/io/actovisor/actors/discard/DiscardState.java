package io.actovisor.actors.discard;

import java.util.List;
import java.util.Objects;

/**
 * What a {@link DiscardManager} knows about discards of one VM's RAM: the one schema that status, the REST API and
 * the metrics report. Plain record components, so a JSON mapper renders it as it is.
 *
 * @param manager                the manager's name
 * @param uncoordinatedHolders   holders that disable uncoordinated discards, draining ones included (invariant 2)
 * @param coordinatedHolders     holders that require coordinated discards, draining ones included
 * @param holders                every holder, in registration order
 * @param blockSize              the size of the blocks coordinated containers unmap and map again
 * @param guestTellsHost         the guest driver negotiated {@code VIRTIO_BALLOON_F_MUST_TELL_HOST}
 * @param discardsGranted        requests answered {@code DiscardNow}
 * @param discardsRefused        requests answered {@code Refused}
 * @param discardsHeld           requests answered {@code Held}
 * @param bytesDiscarded         bytes requesters reported discarded after a {@code DiscardNow}
 * @param bytesRefused           bytes of refused requests
 * @param framesHeld             4 KiB frames held until their block completes or its containers acknowledge
 * @param bytesHeld              {@code framesHeld} in bytes
 * @param blocksUnmapped         blocks currently unmapped in every coordinated container and discarded
 * @param blockReleaseFailures   block releases a container refused or did not acknowledge in time
 * @param remapFailures          block remaps that failed (each is retried, then the VM is paused)
 * @param fallbacks              coordinated holders currently counted as uncoordinated, with the reason
 * @param reportsGranted         free page reports answered {@code DiscardNow}
 * @param reportsSkipped         free page reports refused because a holder (of either kind) was registered
 * @param reportedBytesDiscarded bytes of reported free pages discarded
 * @param reportedBytesSkipped   bytes of reported free pages not discarded because a holder was registered
 * @param lastReportSkipReason   why the last skipped report was skipped, naming the holders ("" if none was)
 */
public record DiscardState(String manager, int uncoordinatedHolders, int coordinatedHolders, List<Holder> holders,
        long blockSize, boolean guestTellsHost, long discardsGranted, long discardsRefused, long discardsHeld, long bytesDiscarded, long bytesRefused,
        long framesHeld, long bytesHeld, long blocksUnmapped, long blockReleaseFailures, long remapFailures,
        List<Fallback> fallbacks, long reportsGranted, long reportsSkipped, long reportedBytesDiscarded,
        long reportedBytesSkipped, String lastReportSkipReason) {

    public DiscardState {
        holders = List.copyOf(holders);
        fallbacks = List.copyOf(fallbacks);
        Objects.requireNonNull(lastReportSkipReason, "lastReportSkipReason");
    }

    /** A state without free page reporting activity. */
    public DiscardState(String manager, int uncoordinatedHolders, int coordinatedHolders, List<Holder> holders,
            long blockSize, boolean guestTellsHost, long discardsGranted, long discardsRefused, long discardsHeld,
            long bytesDiscarded, long bytesRefused, long framesHeld, long bytesHeld, long blocksUnmapped,
            long blockReleaseFailures, long remapFailures, List<Fallback> fallbacks) {
        this(manager, uncoordinatedHolders, coordinatedHolders, holders, blockSize, guestTellsHost, discardsGranted,
                discardsRefused, discardsHeld, bytesDiscarded, bytesRefused, framesHeld, bytesHeld, blocksUnmapped,
                blockReleaseFailures, remapFailures, fallbacks, 0, 0, 0, 0, "");
    }

    /** Names of the holders that disable discards right now (uncoordinated ones and fallen-back coordinated ones). */
    public List<String> disablingHolders() {
        List<String> fallenBack = fallbacks.stream().map(Fallback::holder).toList();
        return holders.stream()
                .filter(h -> h.kind() == DiscardManager.HolderKind.UNCOORDINATED_DISABLED
                        || fallenBack.contains(h.name()))
                .map(Holder::displayName).toList();
    }

    /** Every holder's display name, in registration order. */
    public List<String> holderNames() {
        return holders.stream().map(Holder::displayName).toList();
    }

    /**
     * One holder.
     *
     * @param draining the holder stopped; it is released once its pin owner confirms its pins are gone
     */
    public record Holder(String name, DiscardManager.HolderKind kind, boolean draining) {
        public Holder {
            Objects.requireNonNull(name, "name");
            Objects.requireNonNull(kind, "kind");
        }

        /** The name, marked when the holder is draining. */
        public String displayName() {
            return draining ? name + " (stopped, draining)" : name;
        }
    }

    /** A coordinated holder counted as uncoordinated, and why. */
    public record Fallback(String holder, String reason) {
    }
}
