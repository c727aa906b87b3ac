package io.actovisor.actors.vfio;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.actors.memory.AddressSpaceActor;
import io.actovisor.actors.memory.MemoryListener;
import io.actovisor.actors.testing.NativeTestKit;
import io.actovisor.devices.iommu.DmaFault;
import io.actovisor.devices.iommu.DmaMapping;
import io.actovisor.devices.iommu.DmaPermissions;
import io.actovisor.devices.iommu.DmaPort;
import io.actovisor.devices.iommu.Iommu;
import io.actovisor.devices.iommu.IommuException;
import io.actovisor.devices.iommu.IommuInfo;
import io.actovisor.devices.iommu.model.ModelIommu;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.FlatView;
import io.actovisor.memory.GuestAddress;
import io.actovisor.memory.HostAddress;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.MemoryRegion;
import io.actovisor.memory.Section;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * The container's IOMMU has one owner, its {@link ContainerDmaActor}: the container asks it for every effect and
 * waits for the answer. A DMA request that races with the last group's detach is answered CLOSED and never reaches
 * the closed IOMMU; a mirroring update the IOMMU refuses is rolled back and the address space's commit refused; and
 * when the IOMMU side crashes, the container answers everything it holds, stops, and the IOMMU is closed once.
 */
class IommuOwnerTest {
    private static final long PAGE = 4096;
    private static final Duration TIMEOUT = Duration.ofSeconds(10);
    @RegisterExtension
    static final NativeTestKit KIT = new NativeTestKit();
    private HostMemory memory;

    @AfterEach
    void free() {
        if (memory != null) {
            memory.close();
        }
    }

    /**
     * A model IOMMU with a data path that counts what should never happen: a call after {@link #close()}, and two
     * calls at once. {@link #refuseMapAt} and {@link #bugOnUnmapAt} inject a refusal and a backend bug.
     */
    static final class WatchedIommu implements Iommu {
        final ModelIommu model;
        final AtomicInteger inside = new AtomicInteger();
        final AtomicInteger overlaps = new AtomicInteger();
        final AtomicInteger callsAfterClose = new AtomicInteger();
        final AtomicInteger closes = new AtomicInteger();
        volatile boolean closed;
        volatile long refuseMapAt = -1;
        volatile long bugOnUnmapAt = -1;
        /** When set, the refused map waits for it first (so a test can queue messages behind the update). */
        volatile CountDownLatch beforeRefusal;

        WatchedIommu(int maxMappings) {
            model = ModelIommu.create(maxMappings);
        }

        private void enter() {
            if (inside.incrementAndGet() > 1) {
                overlaps.incrementAndGet();
            }
            if (closed) {
                callsAfterClose.incrementAndGet();
            }
        }

        private void exit() {
            inside.decrementAndGet();
        }

        private void awaitGate() {
            CountDownLatch gate = beforeRefusal;
            try {
                if (gate != null && !gate.await(TIMEOUT.toMillis(), TimeUnit.MILLISECONDS)) {
                    throw new IllegalStateException("the test never opened the gate");
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException("interrupted at the gate", e);
            }
        }

        @Override
        public String backend() {
            return "watched";
        }

        @Override
        public IommuInfo info() {
            enter();
            try {
                return model.info();
            } finally {
                exit();
            }
        }

        @Override
        public void map(AddressRange iova, HostAddress host, DmaPermissions permissions) {
            enter();
            try {
                if (iova.base() == refuseMapAt) {
                    awaitGate();
                    throw new IommuException(IommuException.Kind.LIMIT, iova, "refused on cue at " + iova);
                }
                model.map(iova, host, permissions);
            } finally {
                exit();
            }
        }

        @Override
        public List<DmaMapping> unmap(AddressRange iova) {
            enter();
            try {
                if (iova.base() == bugOnUnmapAt) {
                    throw new IllegalStateException("a backend bug on cue at " + iova);
                }
                return model.unmap(iova);
            } finally {
                exit();
            }
        }

        @Override
        public List<DmaMapping> mappings() {
            enter();
            try {
                return model.mappings();
            } finally {
                exit();
            }
        }

        @Override
        public long pinnedBytes() {
            enter();
            try {
                return model.pinnedBytes();
            } finally {
                exit();
            }
        }

        @Override
        public Optional<DmaPort> dmaPort() {
            return Optional.of(new DmaPort() {
                @Override
                public byte[] read(long iova, int length) {
                    enter();
                    try {
                        if (model.mappings().stream().noneMatch(m -> m.iova().contains(iova))) {
                            throw new DmaFault(iova, "no mapping at " + iova);
                        }
                        return new byte[length];
                    } finally {
                        exit();
                    }
                }

                @Override
                public void write(long iova, byte[] data) {
                    read(iova, data.length);
                }
            });
        }

        @Override
        public void close() {
            enter();
            try {
                closes.incrementAndGet();
                closed = true;
                model.close();
            } finally {
                exit();
            }
        }
    }

    private ActorRef<AddressSpaceActor.Command> spaceWithRam(String name) {
        memory = HostMemory.anonymous(name, 64 * PAGE);
        ActorRef<AddressSpaceActor.Command> space = KIT.kit().spawn(AddressSpaceActor.create(name));
        commit(space, new AddressSpaceActor.AddRegion(MemoryRegion.ram("a", GuestAddress.ZERO, memory)));
        return space;
    }

    private static AddressSpaceActor.CommitResult commit(ActorRef<AddressSpaceActor.Command> space,
            AddressSpaceActor.RegionChange... changes) {
        TestProbe<AddressSpaceActor.CommitResult> probe = KIT.kit().createTestProbe();
        space.tell(new AddressSpaceActor.Commit(List.of(changes), probe.ref()));
        return probe.receiveMessage(TIMEOUT);
    }

    private static void attach(ActorRef<VfioContainerActor.Command> container, String group) {
        TestProbe<VfioContainerActor.AttachResult> attached = KIT.kit().createTestProbe();
        container.tell(new VfioContainerActor.AttachGroup(group, KIT.kit().createTestProbe().ref(), attached.ref()));
        assertInstanceOf(VfioContainerActor.GroupAttached.class, attached.receiveMessage(TIMEOUT));
    }

    private static VfioContainerActor.State state(ActorRef<VfioContainerActor.Command> container) {
        TestProbe<VfioContainerActor.State> probe = KIT.kit().createTestProbe();
        container.tell(new VfioContainerActor.GetState(probe.ref()));
        return probe.receiveMessage(TIMEOUT);
    }

    @Test
    void dmaRacingWithTheLastDetachIsAnsweredClosedAndNeverReachesTheClosedIommu() throws InterruptedException {
        WatchedIommu iommu = new WatchedIommu(65535);
        ActorRef<AddressSpaceActor.Command> space = spaceWithRam("owner-race");
        ActorRef<VfioContainerActor.Command> container = KIT.kit().spawn(VfioContainerActor.create("c0", space,
                IommuBackend.shared("watched", () -> iommu)), "owner-race-c0", VfioContainerActor.DISPATCHER);
        attach(container, "g0");
        TestProbe<ContainerDmaActor.ReadResult> reads = KIT.kit().createTestProbe();
        int shots = 500;
        Thread shooter = new Thread(() -> {
            for (int i = 0; i < shots; i++) {
                container.tell(new VfioContainerActor.Dma(new ContainerDmaActor.DmaRead(i * 8L, 8, reads.ref())));
            }
        }, "dma-shooter");
        TestProbe<VfioContainerActor.DetachResult> detached = KIT.kit().createTestProbe();
        shooter.start();
        container.tell(new VfioContainerActor.DetachGroup("g0", detached.ref()));
        shooter.join();
        assertEquals(new VfioContainerActor.GroupDetached("c0", "g0", true), detached.receiveMessage(TIMEOUT));
        // Sent after the detach was answered: certainly behind the close.
        container.tell(new VfioContainerActor.Dma(new ContainerDmaActor.DmaRead(0, 8, reads.ref())));

        int served = 0;
        int refused = 0;
        ContainerDmaActor.ReadResult last = null;
        for (int i = 0; i <= shots; i++) {
            last = reads.receiveMessage(TIMEOUT);
            if (last instanceof ContainerDmaActor.DataRead) {
                served++;
            } else {
                ContainerDmaActor.DmaFailed failed = (ContainerDmaActor.DmaFailed) last;
                assertEquals(Optional.of(IommuException.Kind.CLOSED), failed.kind(), failed.reason());
                refused++;
            }
        }
        assertEquals(shots + 1, served + refused);
        ContainerDmaActor.DmaFailed after = assertInstanceOf(ContainerDmaActor.DmaFailed.class, last);
        assertEquals(Optional.of(IommuException.Kind.CLOSED), after.kind(), after.reason());
        assertEquals(0, iommu.callsAfterClose.get(), "no call reached the IOMMU after it closed");
        assertEquals(0, iommu.overlaps.get(), "no two calls reached the IOMMU at once");
        assertEquals(1, iommu.closes.get(), "the IOMMU was closed once");
        KIT.kit().stop(container);
        KIT.kit().stop(space);
    }

    @Test
    void aRefusedMirrorUpdateIsRolledBackAndTheCommitRefused() {
        WatchedIommu iommu = new WatchedIommu(65535);
        ActorRef<AddressSpaceActor.Command> space = spaceWithRam("owner-rollback");
        ActorRef<VfioContainerActor.Command> container = KIT.kit().spawn(VfioContainerActor.create("c0", space,
                IommuBackend.shared("watched", () -> iommu)), "owner-rollback-c0", VfioContainerActor.DISPATCHER);
        attach(container, "g0");
        List<DmaMapping> before = state(container).mappings();
        assertEquals(1, before.size());

        // b maps, c is refused: the update unmaps b again, and the commit fails as a whole.
        iommu.refuseMapAt = 1L << 30;
        AddressSpaceActor.CommitFailed failed = assertInstanceOf(AddressSpaceActor.CommitFailed.class,
                commit(space, new AddressSpaceActor.AddRegion(MemoryRegion.ram("b", AddressRange.of(1L << 29,
                        4 * PAGE), memory, 0)), new AddressSpaceActor.AddRegion(MemoryRegion.ram("c",
                        AddressRange.of(1L << 30, 4 * PAGE), memory, 4 * PAGE))));
        assertEquals("c0", failed.listener());
        assertTrue(failed.reason().contains("container c0 (watched) refused commit"), failed.reason());
        assertTrue(failed.reason().contains("refused on cue"), failed.reason());
        assertEquals(before, state(container).mappings(), "the IOMMU is as it was before the refused commit");

        iommu.refuseMapAt = -1;
        assertInstanceOf(AddressSpaceActor.Committed.class, commit(space, new AddressSpaceActor.AddRegion(
                MemoryRegion.ram("b", AddressRange.of(1L << 29, 4 * PAGE), memory, 0))));
        assertEquals(2, state(container).mappings().size());
        assertEquals(0, iommu.overlaps.get());
        KIT.kit().stop(container);
        KIT.kit().stop(space);
    }

    @Test
    void whenTheIommuSideCrashesTheContainerAnswersWhatItHoldsAndStops() {
        WatchedIommu iommu = new WatchedIommu(65535);
        memory = HostMemory.anonymous("owner-crash", 64 * PAGE);
        TestProbe<AddressSpaceActor.Command> space = KIT.kit().createTestProbe();
        ActorRef<VfioContainerActor.Command> container = KIT.kit().spawn(VfioContainerActor.create("c0", space.ref(),
                IommuBackend.shared("watched", () -> iommu)), "owner-crash-c0", VfioContainerActor.DISPATCHER);
        TestProbe<VfioContainerActor.AttachResult> attached = KIT.kit().createTestProbe();
        container.tell(new VfioContainerActor.AttachGroup("g0", KIT.kit().createTestProbe().ref(), attached.ref()));
        AddressSpaceActor.Subscribe subscribe = space.expectMessageClass(AddressSpaceActor.Subscribe.class);
        TestProbe<MemoryListener.Reply> replies = KIT.kit().createTestProbe();
        subscribe.listener().tell(new MemoryListener.Update(1, List.of(), sections(
                MemoryRegion.ram("a", AddressRange.of(0, 4 * PAGE), memory, 0)), false, replies.ref()));
        assertEquals(new MemoryListener.Applied(1, "c0"), replies.receiveMessage(TIMEOUT));
        subscribe.replyTo().tell(new AddressSpaceActor.Subscribed("c0", 1));
        assertEquals(new VfioContainerActor.GroupAttached("c0", "g0", 1), attached.receiveMessage(TIMEOUT));

        // d maps, c is refused, and undoing d hits a backend bug: the IOMMU side crashes mid-update.
        iommu.refuseMapAt = 16 * PAGE;
        iommu.bugOnUnmapAt = 8 * PAGE;
        CountDownLatch gate = new CountDownLatch(1);
        iommu.beforeRefusal = gate;
        TestProbe<Object> watcher = KIT.kit().createTestProbe();
        TestProbe<VfioContainerActor.State> stateProbe = KIT.kit().createTestProbe();
        TestProbe<VfioContainerActor.AttachResult> secondAttach = KIT.kit().createTestProbe();
        TestProbe<VfioContainerActor.DetachResult> detached = KIT.kit().createTestProbe();
        subscribe.listener().tell(new MemoryListener.Update(2, List.of(), sections(
                MemoryRegion.ram("d", AddressRange.of(8 * PAGE, 4 * PAGE), memory, 8 * PAGE),
                MemoryRegion.ram("c", AddressRange.of(16 * PAGE, 4 * PAGE), memory, 16 * PAGE)), false,
                replies.ref()));
        // These arrive while the container waits for its IOMMU side: each still gets an answer.
        container.tell(new VfioContainerActor.GetState(stateProbe.ref()));
        container.tell(new VfioContainerActor.AttachGroup("g1", KIT.kit().createTestProbe().ref(), secondAttach.ref()));
        container.tell(new VfioContainerActor.DetachGroup("g0", detached.ref()));
        gate.countDown(); // only now does the IOMMU side crash: the three requests above are already queued

        MemoryListener.Refused refused = assertInstanceOf(MemoryListener.Refused.class,
                replies.receiveMessage(TIMEOUT));
        assertEquals(2, refused.commitId());
        assertTrue(refused.reason().contains("lost its IOMMU side"), refused.reason());
        VfioContainerActor.State state = stateProbe.receiveMessage(TIMEOUT);
        assertEquals(List.of(), state.mappings(), "the crashed side's PostStop closed the IOMMU");
        assertEquals(Optional.empty(), state.info());
        VfioContainerActor.GroupAttachFailed attachFailed = assertInstanceOf(
                VfioContainerActor.GroupAttachFailed.class, secondAttach.receiveMessage(TIMEOUT));
        assertTrue(attachFailed.reason().contains("lost its IOMMU side"), attachFailed.reason());
        assertEquals(new VfioContainerActor.GroupDetached("c0", "g0", true), detached.receiveMessage(TIMEOUT));
        watcher.expectTerminated(container, TIMEOUT);
        assertEquals(1, iommu.closes.get(), "the IOMMU side closed the IOMMU once, in its PostStop");
        assertEquals(0, iommu.callsAfterClose.get());
        assertEquals(0, iommu.overlaps.get());
    }

    @Test
    void aRequestThatHitsABackendBugIsAnsweredAndTheContainerStops() {
        WatchedIommu iommu = new WatchedIommu(65535);
        ActorRef<AddressSpaceActor.Command> space = spaceWithRam("owner-bug");
        ActorRef<VfioContainerActor.Command> container = KIT.kit().spawn(VfioContainerActor.create("c0", space,
                IommuBackend.shared("watched", () -> iommu)), "owner-bug-c0", VfioContainerActor.DISPATCHER);
        attach(container, "g0");
        iommu.bugOnUnmapAt = 0;
        TestProbe<ContainerDmaActor.UnmapResult> unmapped = KIT.kit().createTestProbe();
        container.tell(new VfioContainerActor.Dma(new ContainerDmaActor.UnmapDma(AddressRange.of(0, PAGE),
                unmapped.ref())));
        ContainerDmaActor.DmaFailed failed = assertInstanceOf(ContainerDmaActor.DmaFailed.class,
                unmapped.receiveMessage(TIMEOUT));
        assertTrue(failed.reason().contains("failed unexpectedly") && failed.reason().contains("backend bug"),
                failed.reason());
        KIT.kit().createTestProbe().expectTerminated(container, TIMEOUT);
        assertEquals(1, iommu.closes.get());
        // The address space dropped the stopped listener: commits go on without it.
        assertInstanceOf(AddressSpaceActor.Committed.class, commit(space, new AddressSpaceActor.AddRegion(
                MemoryRegion.ram("b", AddressRange.of(1L << 29, 4 * PAGE), memory, 0))));
        KIT.kit().stop(space);
    }

    private static List<Section> sections(MemoryRegion... regions) {
        return FlatView.of(List.of(regions)).sections();
    }
}
