package io.actovisor.benchmarks;

import java.util.List;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.Props;
import org.apache.pekko.actor.typed.javadsl.Behaviors;

/**
 * The floor of a mailbox design: a message handed from actor to actor along a fixed route with no work at all,
 * the last one answering the caller's ask. A route of n relays makes n + 1 hand-offs (caller to the first relay,
 * n - 1 between relays, the last relay to the caller). Relays run on the dispatchers of the actors they stand for,
 * so the chain pays the same thread wake-ups as the real path.
 */
final class BareChain {
    /** One hop: {@code route.get(next)} is the next relay, past the end the caller. */
    record Hop(List<ActorRef<Hop>> route, int next, ActorRef<Done> replyTo) {
    }

    /** The caller's answer. */
    enum Done { INSTANCE }

    private final ActorSystem<?> system;
    private final List<ActorRef<Hop>> route;

    BareChain(ActorSystem<?> system, List<ActorRef<Hop>> route) {
        this.system = system;
        this.route = List.copyOf(route);
    }

    /** The number of hand-offs one {@link #run} makes. */
    int handOffs() {
        return route.size() + 1;
    }

    /** Send one message along the route and wait for it to come back. */
    Done run() {
        return Trees.ask(system, route.get(0), (ActorRef<Done> r) -> new Hop(route, 1, r));
    }

    /** A relay on {@code dispatcher} ({@code Props.empty()} for Pekko's default dispatcher). */
    static ActorRef<Hop> relay(ActorSystem<?> system, String name, Props dispatcher) {
        return system.systemActorOf(relay(), name, dispatcher);
    }

    private static Behavior<Hop> relay() {
        return Behaviors.receive(Hop.class).onMessage(Hop.class, hop -> {
            if (hop.next() < hop.route().size()) {
                hop.route().get(hop.next()).tell(new Hop(hop.route(), hop.next() + 1, hop.replyTo()));
            } else {
                hop.replyTo().tell(Done.INSTANCE);
            }
            return Behaviors.same();
        }).build();
    }
}
