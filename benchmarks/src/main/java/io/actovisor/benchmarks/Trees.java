package io.actovisor.benchmarks;

import com.typesafe.config.ConfigFactory;
import java.time.Duration;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.RecipientRef;
import org.apache.pekko.actor.typed.javadsl.AskPattern;
import org.apache.pekko.actor.typed.javadsl.Behaviors;

/** Shared set-up for the benchmarks: an actor system with logging turned down, and a blocking ask. */
final class Trees {
    static final Duration TIMEOUT = Duration.ofSeconds(60);

    private Trees() {
    }

    static ActorSystem<Void> system(String name) {
        return ActorSystem.create(Behaviors.empty(), name, ConfigFactory.parseString(
                "pekko.loglevel = WARNING\npekko.log-dead-letters = off").withFallback(ConfigFactory.load()));
    }

    static <Q, R> R ask(ActorSystem<?> system, RecipientRef<Q> to, Function<ActorRef<R>, Q> message) {
        CompletionStage<R> answer = AskPattern.ask(to, message::apply, TIMEOUT, system.scheduler());
        try {
            return answer.toCompletableFuture().get(TIMEOUT.toSeconds(), TimeUnit.SECONDS);
        } catch (Exception e) {
            throw new IllegalStateException("no answer from " + to, e);
        }
    }

    static void terminate(ActorSystem<?> system) {
        system.terminate();
        try {
            system.getWhenTerminated().toCompletableFuture().get(30, TimeUnit.SECONDS);
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }
}
