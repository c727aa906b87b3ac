package io.actovisor.actors.events;

import io.actovisor.memory.AddressRange;
import java.util.List;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.eventstream.EventStream;

/**
 * Domain events the actors publish on the Pekko event stream, in the past tense. Tests subscribe a probe to one
 * type ({@code new EventStream.Subscribe<>(InhibitChanged.class, probe.ref())}); metrics and logs may subscribe to
 * all with {@code ActovisorEvent.class}.
 */
public sealed interface ActovisorEvent {

    /** Publish {@code event} on {@code system}'s event stream. */
    static void publish(ActorSystem<?> system, ActovisorEvent event) {
        system.eventStream().tell(new EventStream.Publish<>(event));
    }

    /**
     * The balloon's inhibitor count changed.
     *
     * @param balloon the balloon's name
     * @param count   inhibitors now held
     * @param holders their names, in the order they were taken
     * @param cause   what changed it: "inhibit", "release" or "holder stopped"
     */
    record InhibitChanged(String balloon, int count, List<String> holders, String cause) implements ActovisorEvent {
        public InhibitChanged {
            holders = List.copyOf(holders);
        }
    }

    /**
     * An address space committed a topology change that every listener applied.
     *
     * @param commitId the address space's commit sequence number
     * @param removed  sections removed
     * @param added    sections added
     * @param listeners how many listeners acknowledged it
     */
    record TopologyCommitted(String addressSpace, long commitId, int removed, int added, int listeners)
            implements ActovisorEvent {
    }

    /** A commit failed as a whole; listeners that had applied it were rolled back. */
    record TopologyRefused(String addressSpace, long commitId, String listener, String reason)
            implements ActovisorEvent {
    }

    /** The balloon's target or actual size changed (bytes). */
    record BalloonChanged(String balloon, long targetBytes, long actualBytes) implements ActovisorEvent {
    }

    /**
     * The guest gave pages up but the host did not reclaim them because the balloon is inhibited.
     *
     * @param ranges  the guest-physical ranges that were not discarded (coalesced)
     * @param pages   how many 4 KiB pages they hold
     * @param holders the inhibitors that prevented it
     */
    record DiscardSkipped(String balloon, List<AddressRange> ranges, long pages, List<String> holders)
            implements ActovisorEvent {
        public DiscardSkipped {
            ranges = List.copyOf(ranges);
            holders = List.copyOf(holders);
        }
    }

    /**
     * Guest pages were discarded while inhibitors were held, because {@code balloon.unsafe-ignore-inhibitor} is
     * set: devices that pinned these pages now see stale memory.
     */
    record UnsafeDiscard(String balloon, List<AddressRange> ranges, long pages, List<String> holders)
            implements ActovisorEvent {
        public UnsafeDiscard {
            ranges = List.copyOf(ranges);
            holders = List.copyOf(holders);
        }
    }

    /** The guest wrote a line to its serial console. */
    record GuestConsoleLine(String device, String line) implements ActovisorEvent {
    }

    /** The guest reported a 64-bit value on the report port (e.g. a checksum). */
    record GuestReported(long value) implements ActovisorEvent {
    }
}
