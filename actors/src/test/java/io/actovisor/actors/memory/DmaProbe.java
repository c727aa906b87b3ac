package io.actovisor.actors.memory;

import io.actovisor.actors.vfio.ContainerDmaActor;
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
        TestProbe<ContainerDmaActor.ReadResult> probe = kit.createTestProbe();
        container.tell(new VfioContainerActor.Dma(new ContainerDmaActor.DmaRead(iova, length, probe.ref())));
        ContainerDmaActor.ReadResult result = probe.receiveMessage(timeout);
        if (result instanceof ContainerDmaActor.DmaFailed failed) {
            throw new AssertionError("DMA read at 0x" + Long.toHexString(iova) + " failed: " + failed.reason());
        }
        return ((ContainerDmaActor.DataRead) result).data();
    }

    static void write(ActorTestKit kit, ActorRef<VfioContainerActor.Command> container, long iova, byte[] data,
            Duration timeout) {
        TestProbe<ContainerDmaActor.WriteResult> probe = kit.createTestProbe();
        container.tell(new VfioContainerActor.Dma(new ContainerDmaActor.DmaWrite(iova, data, probe.ref())));
        ContainerDmaActor.WriteResult result = probe.receiveMessage(timeout);
        if (result instanceof ContainerDmaActor.DmaFailed failed) {
            throw new AssertionError("DMA write at 0x" + Long.toHexString(iova) + " failed: " + failed.reason());
        }
    }
}
