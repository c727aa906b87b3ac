package io.actovisor.testkit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.actors.vm.VmActor;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.junit.jupiter.api.Test;

/** {@code @ActovisorTest(singleThread = true)}: every dispatcher has one thread, and a scripted VM still runs. */
@ActovisorTest(singleThread = true)
class SingleThreadTest {
    @Test
    void theDispatchersHaveOneThreadAndAScriptedVmRuns(ActorTestKit kit, LeakCheck leaks) {
        var config = kit.system().settings().config();
        assertEquals(1, config.getInt("pekko.actor.default-dispatcher.thread-pool-executor.fixed-pool-size"));
        assertEquals(1, config.getInt("actovisor.dispatchers.blocking-io.thread-pool-executor.fixed-pool-size"));
        var topology = leaks.track(ScriptedVm.named("single").build());
        try (RunningVm vm = RunningVm.start(kit, topology)) {
            assertTrue(vm.awaitLine("round 2:").startsWith("round 2: pages 256 balloon 0 cpu "));
            assertEquals(VmActor.GuestState.RUNNING, vm.guest().state());
        }
    }
}
