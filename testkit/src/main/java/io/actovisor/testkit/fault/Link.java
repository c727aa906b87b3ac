package io.actovisor.testkit.fault;

import java.time.Duration;
import java.util.Objects;
import java.util.Optional;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.javadsl.Behaviors;

/**
 * The path from one actor to another as a test controls it: a forwarding actor that the sender is given instead of
 * the receiver, dropping or delaying the {@code nth} message (from 1), or every message from the nth on.
 *
 * @param delay empty: drop; present: deliver this much later
 * @param from  the sender's name, for messages and logs
 * @param to    the receiver's name
 */
public record Link(String from, String to, int nth, boolean fromNthOn, Optional<Duration> delay) {
    public Link {
        Objects.requireNonNull(from, "from");
        Objects.requireNonNull(to, "to");
        if (nth < 1) {
            throw new IllegalArgumentException("messages are counted from 1, not " + nth);
        }
    }

    /** Drop the {@code nth} message from {@code from} to {@code to}. */
    public static Link drop(String from, String to, int nth) {
        return new Link(from, to, nth, false, Optional.empty());
    }

    /** Drop every message from {@code from} to {@code to} from the {@code nth} on (a partition). */
    public static Link dropFrom(String from, String to, int nth) {
        return new Link(from, to, nth, true, Optional.empty());
    }

    /** Deliver the {@code nth} message from {@code from} to {@code to} {@code delay} late. */
    public static Link delay(String from, String to, int nth, Duration delay) {
        return new Link(from, to, nth, false, Optional.of(delay));
    }

    /** The forwarding actor's behavior, in front of {@code target}. */
    public <T> Behavior<T> behavior(ActorRef<T> target) {
        AtomicInteger count = new AtomicInteger();
        return Behaviors.receive((context, message) -> {
            int n = count.incrementAndGet();
            boolean hit = fromNthOn ? n >= nth : n == nth;
            if (!hit) {
                target.tell(message);
            } else if (delay.isPresent()) {
                context.getLog().info("link {} -> {}: message #{} ({}) delayed {} ms", from, to, n,
                        message.getClass().getSimpleName(), delay.get().toMillis());
                context.scheduleOnce(delay.get(), target, message);
            } else {
                context.getLog().info("link {} -> {}: message #{} ({}) dropped", from, to, n,
                        message.getClass().getSimpleName());
            }
            return Behaviors.same();
        });
    }
}
