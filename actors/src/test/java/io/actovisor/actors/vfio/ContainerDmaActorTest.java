package io.actovisor.actors.vfio;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.actors.memory.AddressSpaceActor;
import io.actovisor.actors.testing.NativeTestKit;
import io.actovisor.devices.coherence.CpuView;
import io.actovisor.devices.iommu.DmaMapping;
import io.actovisor.devices.iommu.DmaPermissions;
import io.actovisor.devices.iommu.IommuException;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.GuestAddress;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.MemoryRegion;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * The container's DMA side on the model backend: typed answers for user maps, a refusal with the IOMMU's kind, no
 * data path on a backend without one, and CLOSED before the first group attaches and after the last one leaves.
 */
class ContainerDmaActorTest {
    private static final long PAGE = 4096;
    private static final Duration TIMEOUT = Duration.ofSeconds(10);
    @RegisterExtension
    static final NativeTestKit KIT = new NativeTestKit();

    private static <R> R ask(ActorRef<VfioContainerActor.Command> container,
            java.util.function.Function<ActorRef<R>, ContainerDmaActor.Request> request) {
        TestProbe<R> probe = KIT.kit().createTestProbe();
        container.tell(new VfioContainerActor.Dma(request.apply(probe.ref())));
        return probe.receiveMessage(TIMEOUT);
    }

    private static void assertClosed(Object result) {
        ContainerDmaActor.DmaFailed failed = assertInstanceOf(ContainerDmaActor.DmaFailed.class, result);
        assertEquals(Optional.of(IommuException.Kind.CLOSED), failed.kind(), failed.reason());
    }

    @Test
    void userMapsReadsAndAuditsGetTypedAnswersOnlyWhileAGroupIsAttached() {
        try (HostMemory ram = HostMemory.anonymous("container-dma-ram", 16 * PAGE);
                HostMemory extra = HostMemory.anonymous("container-dma-extra", 4 * PAGE)) {
            ActorRef<AddressSpaceActor.Command> space = KIT.kit().spawn(AddressSpaceActor.create("container-dma"));
            TestProbe<AddressSpaceActor.CommitResult> committed = KIT.kit().createTestProbe();
            space.tell(new AddressSpaceActor.Commit(List.of(new AddressSpaceActor.AddRegion(
                    MemoryRegion.ram("ram", GuestAddress.ZERO, ram))), committed.ref()));
            committed.expectMessageClass(AddressSpaceActor.Committed.class, TIMEOUT);
            ActorRef<VfioContainerActor.Command> container = KIT.kit().spawn(VfioContainerActor.create("c0", space,
                    IommuBackend.model(65535)));
            AddressRange user = AddressRange.of(1L << 30, 4 * PAGE);

            assertClosed(ContainerDmaActorTest.<ContainerDmaActor.MapResult>ask(container,
                    r -> new ContainerDmaActor.MapDma(user, extra.base(), DmaPermissions.READ_WRITE, r)));

            TestProbe<VfioContainerActor.AttachResult> attached = KIT.kit().createTestProbe();
            TestProbe<Object> group = KIT.kit().createTestProbe();
            container.tell(new VfioContainerActor.AttachGroup("g0", group.ref(), attached.ref()));
            attached.expectMessageClass(VfioContainerActor.GroupAttached.class, TIMEOUT);

            assertEquals(new ContainerDmaActor.Mapped(user), ContainerDmaActorTest.<ContainerDmaActor.MapResult>ask(
                    container, r -> new ContainerDmaActor.MapDma(user, extra.base(), DmaPermissions.READ_WRITE, r)));
            ContainerDmaActor.DmaFailed overlap = assertInstanceOf(ContainerDmaActor.DmaFailed.class,
                    ContainerDmaActorTest.<ContainerDmaActor.MapResult>ask(container, r -> new ContainerDmaActor
                            .MapDma(AddressRange.of(PAGE, PAGE), extra.base(), DmaPermissions.READ_WRITE, r)));
            assertEquals(Optional.of(IommuException.Kind.OVERLAP), overlap.kind(), "RAM is mirrored at IOVA 0");
            ContainerDmaActor.DmaFailed noPath = assertInstanceOf(ContainerDmaActor.DmaFailed.class,
                    ContainerDmaActorTest.<ContainerDmaActor.ReadResult>ask(container,
                            r -> new ContainerDmaActor.DmaRead(0, 8, r)));
            assertTrue(noPath.reason().contains("no device data path"), noPath.reason());
            ContainerDmaActor.LedgerResult ledger = ask(container,
                    r -> new ContainerDmaActor.TakePfnLedger(CpuView.of(List.of(ram, extra)), r));
            assertInstanceOf(ContainerDmaActor.LedgerTaken.class, ledger);
            ContainerDmaActor.DmaFailed notType1 = assertInstanceOf(ContainerDmaActor.DmaFailed.class,
                    ContainerDmaActorTest.<ContainerDmaActor.KernelInfoResult>ask(container,
                            ContainerDmaActor.ReadKernelInfo::new));
            assertTrue(notType1.reason().contains("not vfio-type1"), notType1.reason());

            ContainerDmaActor.Unmapped unmapped = assertInstanceOf(ContainerDmaActor.Unmapped.class,
                    ContainerDmaActorTest.<ContainerDmaActor.UnmapResult>ask(container,
                            r -> new ContainerDmaActor.UnmapDma(user, r)));
            assertEquals(List.of(new DmaMapping(user, extra.base(), DmaPermissions.READ_WRITE)),
                    unmapped.mappings());

            TestProbe<VfioContainerActor.DetachResult> detached = KIT.kit().createTestProbe();
            container.tell(new VfioContainerActor.DetachGroup("g0", detached.ref()));
            assertEquals(new VfioContainerActor.GroupDetached("c0", "g0", true), detached.receiveMessage(TIMEOUT));
            assertClosed(ContainerDmaActorTest.<ContainerDmaActor.UnmapResult>ask(container,
                    r -> new ContainerDmaActor.UnmapDma(user, r)));
            KIT.kit().stop(container);
            KIT.kit().stop(space);
        }
    }

    @Test
    void aDmaWriteKeepsItsOwnCopyOfTheData() {
        byte[] data = {1, 2, 3};
        ContainerDmaActor.DmaWrite write = new ContainerDmaActor.DmaWrite(0, data,
                KIT.kit().<ContainerDmaActor.WriteResult>createTestProbe().ref());
        data[0] = 9;
        write.data()[1] = 9;
        assertEquals(List.of((byte) 1, (byte) 2, (byte) 3), List.of(write.data()[0], write.data()[1],
                write.data()[2]));
    }
}
