package io.actovisor.actors.memory;

import io.actovisor.memory.Section;
import java.util.List;
import java.util.Objects;
import org.apache.pekko.actor.typed.ActorRef;

/**
 * The protocol between an {@code AddressSpaceActor} and the actors that mirror its flat view (VFIO containers,
 * KVM memory slots, your own). A listener subscribes with an {@code ActorRef<MemoryListener.Update>} (usually a
 * message adapter) and then receives <b>one</b> {@link Update} per commit that touches the address space, carrying
 * every section removed ({@code RegionDel}) and added ({@code RegionAdd}) by that commit. It applies removals
 * before additions and answers {@link Applied} or {@link Refused}.
 *
 * <p>A listener that refuses must leave its state as it was before the update. If another listener refuses later,
 * a listener that already applied the commit receives the inverse update with {@code rollback = true}, which it
 * must apply (it only undoes what it did).
 */
public final class MemoryListener {
    private MemoryListener() {
    }

    /**
     * The changes of one commit.
     *
     * @param commitId   the address space's commit sequence number (rollbacks reuse it)
     * @param regionDel  sections removed from the flat view, in address order; apply these first
     * @param regionAdd  sections added to the flat view, in address order
     * @param rollback   whether this update undoes an earlier one with the same {@code commitId}
     * @param replyTo    where to answer
     */
    public record Update(long commitId, List<Section> regionDel, List<Section> regionAdd, boolean rollback,
            ActorRef<Reply> replyTo) {
        public Update {
            regionDel = List.copyOf(regionDel);
            regionAdd = List.copyOf(regionAdd);
            Objects.requireNonNull(replyTo, "replyTo");
        }
    }

    /** A listener's answer to an {@link Update}. */
    public sealed interface Reply permits Applied, Refused {
        long commitId();
    }

    /** The update is applied in full. */
    public record Applied(long commitId, String listener) implements Reply {
    }

    /**
     * The update could not be applied and nothing of it remains applied.
     *
     * @param listener the listener's name, for the committer's error
     * @param reason   a sentence naming what failed and why (e.g. the IOMMU's error)
     */
    public record Refused(long commitId, String listener, String reason) implements Reply {
    }
}
