package io.actovisor.actors;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executor;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.typed.DispatcherSelector;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * The dispatchers whose threads submit to io_uring rings or run madvise on guest memory keep their threads for the
 * life of the actor system (reference.conf, {@code allow-core-timeout = off}): a thread that exits while other
 * threads still use the rings it submitted to takes io_uring's uninterruptible thread-exit cancellation. Observed with
 * a keep-alive shortened to 50 ms, against a control dispatcher with Pekko's default ({@code on}), whose thread is
 * first seen to exit: so the idle time was long enough for ours to exit too, had they been allowed to.
 */
class DispatcherThreadsTest {
    private static final List<String> KEPT = List.of("blocking-io", "vm-io", "vm-discard");

    private ActorTestKit kit;

    @AfterEach
    void stop() {
        if (kit != null) {
            kit.shutdownTestKit();
        }
    }

    private static Thread threadOf(Executor executor) throws Exception {
        CompletableFuture<Thread> thread = new CompletableFuture<>();
        executor.execute(() -> thread.complete(Thread.currentThread()));
        return thread.get(30, TimeUnit.SECONDS);
    }

    private Executor dispatcher(String path) {
        return kit.system().dispatchers().lookup(DispatcherSelector.fromConfig(path));
    }

    @Test
    void theThreadsOfTheNativeWorkDispatchersDoNotExitWhenIdle() throws Exception {
        StringBuilder overrides = new StringBuilder("""
                control-dispatcher {
                  type = Dispatcher
                  executor = "thread-pool-executor"
                  thread-pool-executor { fixed-pool-size = 1, keep-alive-time = 50ms }
                }
                """);
        for (String name : KEPT) {
            overrides.append("actovisor.dispatchers.").append(name)
                    .append(".thread-pool-executor.keep-alive-time = 50ms\n");
        }
        Config config = ConfigFactory.parseString(overrides.toString()).withFallback(ConfigFactory.load());
        for (String name : KEPT) {
            assertFalse(config.getBoolean("actovisor.dispatchers." + name + ".thread-pool-executor.allow-core-timeout"),
                    name);
        }
        kit = ActorTestKit.create("dispatcher-threads", config);
        List<Thread> kept = new ArrayList<>();
        for (String name : KEPT) {
            kept.add(threadOf(dispatcher("actovisor.dispatchers." + name)));
        }
        // Last, so that its thread goes idle after every kept one.
        Thread control = threadOf(dispatcher("control-dispatcher"));
        control.join(Duration.ofSeconds(60).toMillis());
        assertFalse(control.isAlive(), "the control dispatcher's idle thread exits after its keep-alive time");
        for (int i = 0; i < KEPT.size(); i++) {
            assertTrue(kept.get(i).isAlive(), KEPT.get(i) + "'s idle thread exited: " + kept.get(i).getName());
        }
    }
}
