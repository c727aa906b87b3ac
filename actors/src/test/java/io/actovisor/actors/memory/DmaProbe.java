package io.actovisor.actors.memory;

import io.actovisor.actors.vfio.VfioContainerActor;
import java.time.Duration;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;

/** Device DMA through a container's IOMMU, as a test asks for it; a refused transfer fails the test. */
final class DmaProbe {
    private DmaProbe() {
    }

    static byte[] read(ActorTestKit kit, ActorRef<VfioContainerActor.Command> container, long iova, int length,
            Duration timeout) {
        TestProbe<VfioContainerActor.DmaResult> probe = kit.createTestProbe();
        container.tell(new VfioContainerActor.DmaRead(iova, length, probe.ref()));
        VfioContainerActor.DmaResult result = probe.receiveMessage(timeout);
        if (result instanceof VfioContainerActor.DmaFailed failed) {
            throw new AssertionError("DMA read at 0x" + Long.toHexString(iova) + " failed: " + failed.reason());
        }
        return (byte[]) ((VfioContainerActor.DmaDone) result).value();
    }

    static void write(ActorTestKit kit, ActorRef<VfioContainerActor.Command> container, long iova, byte[] data,
            Duration timeout) {
        TestProbe<VfioContainerActor.DmaResult> probe = kit.createTestProbe();
        container.tell(new VfioContainerActor.DmaWrite(iova, data, probe.ref()));
        VfioContainerActor.DmaResult result = probe.receiveMessage(timeout);
        if (result instanceof VfioContainerActor.DmaFailed failed) {
            throw new AssertionError("DMA write at 0x" + Long.toHexString(iova) + " failed: " + failed.reason());
        }
    }
}
