package io.actovisor.actors;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.actors.balloon.BalloonActor;
import io.actovisor.actors.discard.DiscardManager;
import io.actovisor.actors.guest.ScriptedGuestActor;
import io.actovisor.actors.kvm.KvmMemoryActor;
import io.actovisor.actors.memory.AddressSpaceActor;
import io.actovisor.actors.vfio.ContainerDmaActor;
import io.actovisor.actors.vfio.VfioContainerActor;
import io.actovisor.actors.vfio.VfioGroupActor;
import io.actovisor.actors.vm.VmActor;
import io.actovisor.kernel.kvm.Registers;
import java.util.List;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.typed.ActorRef;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;

/** Every actor protocol is closed, and messages cannot be changed after they were sent. */
class ProtocolHygieneTest {
    private static final ActorTestKit KIT = ActorTestKit.create();

    @AfterAll
    static void stop() {
        KIT.shutdownTestKit();
    }

    @Test
    void everyActorsCommandInterfaceIsSealed() {
        for (Class<?> command : List.of(AddressSpaceActor.Command.class, BalloonActor.Command.class,
                DiscardManager.Command.class, KvmMemoryActor.Command.class, ScriptedGuestActor.Command.class,
                VfioContainerActor.Command.class, VfioGroupActor.Command.class, VmActor.Command.class)) {
            assertTrue(command.isSealed(), command.getName() + " is sealed");
        }
    }

    @Test
    void messagesWithArraysKeepWhatWasSent() {
        long[] frames = {1, 2, 3};
        ActorRef<BalloonActor.InflateResult> inflated = KIT.<BalloonActor.InflateResult>createTestProbe().ref();
        BalloonActor.Inflate inflate = new BalloonActor.Inflate(frames, inflated);
        ActorRef<BalloonActor.DeflateResult> deflated = KIT.<BalloonActor.DeflateResult>createTestProbe().ref();
        BalloonActor.Deflate deflate = new BalloonActor.Deflate(frames, deflated);
        frames[0] = 99;
        inflate.frames()[1] = 99;
        deflate.frames()[1] = 99;
        assertArrayEquals(new long[] {1, 2, 3}, inflate.frames());
        assertArrayEquals(new long[] {1, 2, 3}, deflate.frames());

        byte[] data = {7, 8};
        ContainerDmaActor.DmaWrite write = new ContainerDmaActor.DmaWrite(0x1000, data,
                KIT.<ContainerDmaActor.WriteResult>createTestProbe().ref());
        data[0] = 0;
        write.data()[1] = 0;
        assertArrayEquals(new byte[] {7, 8}, write.data());

        long[] values = new long[Registers.NAMES.length];
        values[16] = 0x10000;
        Registers registers = new Registers(values);
        values[16] = 0;
        registers.values()[16] = 0;
        assertEquals(0x10000, registers.rip());
    }
}
