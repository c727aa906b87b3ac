package io.actovisor.testkit.example;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.actors.vm.VmActor;
import io.actovisor.testkit.ActovisorTest;
import io.actovisor.testkit.RunningVm;
import io.actovisor.testkit.ScriptedVm;
import io.actovisor.testkit.guest.Misbehaviour;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.junit.jupiter.api.Test;

/** The example of docs/testkit.md: a guest loops a descriptor chain; the balloon refuses it, the VM lives on. */
@ActovisorTest
class BalloonUnderMisbehaviourTest {
    @Test
    void aDescriptorLoopPutsTheBalloonInNeedsReset(ActorTestKit kit) {
        var topology = ScriptedVm.named("looping")
                .program(() -> Misbehaviour.of(Misbehaviour.Kind.DESCRIPTOR_LOOP))
                .build();
        try (RunningVm vm = RunningVm.start(kit, topology)) {
            String answer = vm.awaitLine("misbehaviour descriptor-loop:");
            assertTrue(answer.endsWith("(DEVICE_NEEDS_RESET)"), answer);
            assertEquals(1, vm.balloonDevice().eventFails());
            assertEquals(VmActor.State.RUNNING, vm.state());
        }
        // After the test, @ActovisorTest checks that no fd, pin, mapping or vCPU thread was left behind.
    }
}
