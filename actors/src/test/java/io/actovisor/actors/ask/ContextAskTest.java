package io.actovisor.actors.ask;

import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.time.Duration;
import java.util.concurrent.TimeoutException;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;

/** Asks answered without a thread per answer; no answer in time is a timeout failure. */
class ContextAskTest {
    private static final ActorTestKit KIT = ActorTestKit.create();

    @AfterAll
    static void stop() {
        KIT.shutdownTestKit();
    }

    record Question(ActorRef<Answer> replyTo) {
    }

    record Answer() {
    }

    /** What the asker received: the answer, or the failure. */
    record Outcome(Answer answer, Throwable failure) {
    }

    /** Asks {@code target} {@code times} times, one after the other, and reports each outcome to {@code probe}. */
    private static Behavior<Outcome> asker(ActorRef<Question> target, Duration timeout, int times,
            TestProbe<Outcome> probe) {
        return Behaviors.setup(context -> {
            ContextAsk.ask(context, Answer.class, target, timeout, Question::new, Outcome::new);
            int[] left = {times - 1};
            return Behaviors.receiveMessage(outcome -> {
                probe.ref().tell(outcome);
                if (left[0]-- == 0) {
                    return Behaviors.stopped();
                }
                ContextAsk.ask(context, Answer.class, target, timeout, Question::new, Outcome::new);
                return Behaviors.same();
            });
        });
    }

    @Test
    void answersStartNoThreads() {
        ActorRef<Question> answerer = KIT.spawn(Behaviors.receiveMessage(q -> {
            q.replyTo().tell(new Answer());
            return Behaviors.same();
        }));
        TestProbe<Outcome> probe = KIT.createTestProbe();
        KIT.spawn(asker(answerer, Duration.ofSeconds(5), 100, probe)); // warm-up: the dispatcher's threads start
        for (int i = 0; i < 100; i++) {
            assertNull(probe.receiveMessage().failure());
        }
        ThreadMXBean threads = ManagementFactory.getThreadMXBean();
        long before = threads.getTotalStartedThreadCount();
        KIT.spawn(asker(answerer, Duration.ofSeconds(5), 500, probe));
        for (int i = 0; i < 500; i++) {
            Outcome outcome = probe.receiveMessage();
            assertNull(outcome.failure());
            assertInstanceOf(Answer.class, outcome.answer());
        }
        // The Java DSL's ask starts a thread per answer where the common pool has a parallelism of 1 (2 CPUs).
        long started = threads.getTotalStartedThreadCount() - before;
        assertTrue(started < 50, started + " threads started for 500 answers");
    }

    @Test
    void noAnswerInTimeIsATimeoutFailure() {
        ActorRef<Question> silent = KIT.spawn(Behaviors.receiveMessage(q -> Behaviors.same()));
        TestProbe<Outcome> probe = KIT.createTestProbe();
        KIT.spawn(asker(silent, Duration.ofMillis(100), 1, probe));
        Outcome outcome = probe.receiveMessage();
        assertNull(outcome.answer());
        assertInstanceOf(TimeoutException.class, outcome.failure());
    }
}
