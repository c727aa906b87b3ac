package io.actovisor.cluster;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ch.qos.logback.classic.Logger;
import ch.qos.logback.classic.spi.ILoggingEvent;
import ch.qos.logback.core.read.ListAppender;
import com.typesafe.config.ConfigFactory;
import java.time.Duration;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.PostStop;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.junit.jupiter.api.Test;
import org.slf4j.LoggerFactory;

/**
 * A node process waits for its actor system to terminate, but not forever: CI once saw a node that the Split Brain
 * Resolver had downed run coordinated shutdown to its end and then never exit, its actor system's termination held.
 * {@link ClusterNode#awaitTermination} gives termination a grace after coordinated shutdown's last phase, then says
 * it did not terminate and logs the threads that hold it.
 */
class NodeTerminationTest {
    private static final String HOLDER = "io.actovisor.cluster.NodeTerminationTest.holdStop";

    @Test
    void anActorWhoseStopNeverEndsDoesNotKeepTheNodeForever() throws Exception {
        ListAppender<ILoggingEvent> log = new ListAppender<>();
        log.start();
        Logger logger = (Logger) LoggerFactory.getLogger(ClusterNode.class);
        logger.addAppender(log);
        CountDownLatch release = new CountDownLatch(1);
        CountDownLatch started = new CountDownLatch(1);
        CountDownLatch stopping = new CountDownLatch(1);
        ActorSystem<Void> system = ActorSystem.create(Behaviors.setup(context -> {
            context.spawn(Behaviors.setup(stuck -> {
                started.countDown();
                return Behaviors.receive(Object.class).onSignal(PostStop.class, signal -> {
                    stopping.countDown();
                    holdStop(release);
                    return Behaviors.same();
                }).build();
            }), "stuck");
            return Behaviors.empty();
        }), "termination", ConfigFactory.parseString(
                "pekko.coordinated-shutdown.phases.actor-system-terminate.timeout = 2s")
                .withFallback(ConfigFactory.load()));
        try {
            // Terminated before the guardian has spawned it, the actor would never start, nor stop.
            assertTrue(started.await(30, TimeUnit.SECONDS), "the actor started");
            system.terminate();
            assertTrue(stopping.await(30, TimeUnit.SECONDS), "the actor's PostStop ran");
            assertFalse(ClusterNode.awaitTermination(system, Duration.ofSeconds(1)),
                    "termination is held by the actor's PostStop");
            String logged = log.list.stream().map(ILoggingEvent::getFormattedMessage).reduce("", String::concat);
            assertTrue(logged.contains("has not terminated"), logged);
            assertTrue(logged.contains(HOLDER), "the log shows where the stop is held: " + logged);
            assertTrue(logged.contains("stuck"), "the log shows the actor still alive: " + logged);
        } finally {
            release.countDown();
            logger.detachAppender(log);
        }
        assertTrue(ClusterNode.awaitTermination(system, Duration.ofSeconds(30)), "released, the system terminates");
    }

    private static void holdStop(CountDownLatch release) {
        try {
            release.await();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
