package io.actovisor.actors.balloon;

import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.javadsl.Behaviors;

/**
 * Holds the discard worker's dispatcher ({@link DiscardWorker#DISPATCHER}, one thread) from construction until
 * {@link #close()}: messages sent to a worker meanwhile wait in its mailbox and are then taken in one go, so a test
 * decides what is "queued together" without racing the worker's short wait.
 */
final class DiscardThreadBlocker implements AutoCloseable {
    private final CountDownLatch release = new CountDownLatch(1);

    DiscardThreadBlocker(ActorTestKit kit) throws InterruptedException {
        CountDownLatch running = new CountDownLatch(1);
        ActorRef<String> blocker = kit.spawn(Behaviors.receiveMessage(m -> {
            running.countDown();
            release.await(30, TimeUnit.SECONDS);
            return Behaviors.stopped();
        }), "discard-thread-blocker-" + System.nanoTime(), DiscardWorker.DISPATCHER);
        blocker.tell("hold");
        assertTrue(running.await(10, TimeUnit.SECONDS), "the blocker holds the vm-discard thread");
    }

    @Override
    public void close() {
        release.countDown();
    }
}
