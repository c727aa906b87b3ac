package io.actovisor.actors.vfio;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;

import io.actovisor.actors.testing.NativeTestKit;
import io.actovisor.devices.iommu.DmaMapping;
import io.actovisor.devices.iommu.DmaPermissions;
import io.actovisor.devices.iommu.DmaPort;
import io.actovisor.devices.iommu.Iommu;
import io.actovisor.devices.iommu.IommuException;
import io.actovisor.devices.iommu.IommuInfo;
import io.actovisor.devices.iommu.model.ModelIommu;
import io.actovisor.devices.iommu.vfio.VfioType1Iommu;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.HostAddress;
import java.util.List;
import java.util.Optional;
import java.util.OptionalLong;
import java.util.Set;
import java.util.concurrent.CopyOnWriteArrayList;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * The container's IOMMU side on its own, one order at a time: a probe stands in for the container. Opening checks the
 * block size against the IOMMU page (and closes what it opened when it does not fit); an update is all or nothing,
 * its refusal undoing its maps and unmaps; a coordinated update is checked against the mapping limit before anything
 * is pinned; blocks are released and restored block by block; closing reports what was pinned, and the IOMMU is
 * closed once, by the order or by {@code PostStop}.
 */
class ContainerDmaOrdersTest {
    private static final long PAGE = 4096;
    private static final long HOST = 1L << 32;
    @RegisterExtension
    static final NativeTestKit KIT = new NativeTestKit();

    /** A model IOMMU under a chosen backend name that refuses a map or an unmap at one IOVA and counts closes. */
    static final class CueIommu implements Iommu {
        final ModelIommu model;
        final String backend;
        final Set<Long> refuseMapAt;
        final Set<Long> refuseUnmapAt;
        final List<String> log = new CopyOnWriteArrayList<>();
        volatile int closes;
        /** "map", "unmap" or "mappings": that call throws an {@link AssertionError} (a bug no order catches). */
        volatile String errorOn = "";

        private void bugAt(String call) {
            if (errorOn.equals(call)) {
                throw new AssertionError("injected bug in " + call);
            }
        }

        CueIommu(String backend, int maxMappings, Set<Long> refuseMapAt, Set<Long> refuseUnmapAt) {
            this.model = ModelIommu.create(maxMappings);
            this.backend = backend;
            this.refuseMapAt = refuseMapAt;
            this.refuseUnmapAt = refuseUnmapAt;
        }

        @Override
        public String backend() {
            return backend;
        }

        @Override
        public IommuInfo info() {
            return model.info();
        }

        @Override
        public void map(AddressRange iova, HostAddress host, DmaPermissions permissions) {
            bugAt("map");
            if (refuseMapAt.contains(iova.base())) {
                throw new IommuException(IommuException.Kind.LIMIT, iova, "map refused at " + iova.base());
            }
            model.map(iova, host, permissions);
            log.add("map " + iova.base());
        }

        @Override
        public List<DmaMapping> unmap(AddressRange iova) {
            bugAt("unmap");
            if (refuseUnmapAt.contains(iova.base())) {
                throw new IommuException(IommuException.Kind.PARTIAL_UNMAP, iova, "unmap refused at "
                        + iova.base());
            }
            List<DmaMapping> out = model.unmap(iova);
            log.add("unmap " + iova.base());
            return out;
        }

        @Override
        public List<DmaMapping> mappings() {
            bugAt("mappings");
            return model.mappings();
        }

        @Override
        public long pinnedBytes() {
            return model.pinnedBytes();
        }

        @Override
        public Optional<DmaPort> dmaPort() {
            return Optional.empty();
        }

        @Override
        public void close() {
            closes++;
            model.close();
        }
    }

    /** A backend opening {@code iommu}, whose context records joins and leaves and refuses group "bad". */
    static final class CueBackend implements IommuBackend {
        final CueIommu iommu;
        final List<String> groups = new CopyOnWriteArrayList<>();
        /** "open", "attach" or "detach": that call throws an {@link AssertionError}. */
        volatile String errorOn = "";

        CueBackend(CueIommu iommu) {
            this.iommu = iommu;
        }

        @Override
        public String name() {
            return iommu.backend();
        }

        @Override
        public Context open(String groupId) {
            if (errorOn.equals("open")) {
                throw new AssertionError("injected bug in open");
            }
            if (groupId.equals("bad")) {
                throw new IllegalArgumentException("no such group: bad");
            }
            groups.add(groupId);
            return new Context() {
                @Override
                public Iommu iommu() {
                    return iommu;
                }

                @Override
                public void attach(String group) {
                    if (errorOn.equals("attach")) {
                        throw new AssertionError("injected bug in attach");
                    }
                    if (group.equals("bad")) {
                        throw new IllegalArgumentException("cannot attach group bad");
                    }
                    groups.add(group);
                }

                @Override
                public void detach(String group) {
                    if (errorOn.equals("detach")) {
                        throw new AssertionError("injected bug in detach");
                    }
                    if (!groups.remove(group)) {
                        throw new IllegalArgumentException("group " + group + " is not in the context");
                    }
                }
            };
        }
    }

    private static CueIommu iommu(int maxMappings) {
        return new CueIommu(ModelIommu.BACKEND, maxMappings, Set.of(), Set.of());
    }

    private static ActorRef<ContainerDmaActor.Command> side(IommuBackend backend) {
        return KIT.kit().spawn(ContainerDmaActor.create("c0", backend), "dma-" + System.nanoTime());
    }

    private static ContainerDmaActor.OrderReply order(ActorRef<ContainerDmaActor.Command> side,
            java.util.function.Function<ActorRef<ContainerDmaActor.OrderReply>, ContainerDmaActor.Order> order) {
        TestProbe<ContainerDmaActor.OrderReply> probe = KIT.kit().createTestProbe();
        side.tell(order.apply(probe.ref()));
        return probe.receiveMessage();
    }

    private static ContainerDmaActor.OrderReply open(ActorRef<ContainerDmaActor.Command> side, OptionalLong block) {
        return order(side, r -> new ContainerDmaActor.Open("g0", block, r));
    }

    private static DmaMapping mapping(long page, long pages) {
        return new DmaMapping(AddressRange.of(page * PAGE, pages * PAGE), HostAddress.of(HOST + page * PAGE),
                DmaPermissions.READ_WRITE);
    }

    private static ContainerDmaActor.OrderReply apply(ActorRef<ContainerDmaActor.Command> side,
            List<AddressRange> unmap, List<DmaMapping> map, OptionalLong block) {
        return order(side, r -> new ContainerDmaActor.Apply(unmap, map, block, r));
    }

    private static List<DmaMapping> mappings(ActorRef<ContainerDmaActor.Command> side) {
        return assertInstanceOf(ContainerDmaActor.Snapshot.class, order(side, ContainerDmaActor.Report::new))
                .mappings();
    }

    @Test
    void openChecksTheBlockAgainstThePageAndClosesWhatItOpenedWhenItDoesNotFit() {
        CueIommu small = iommu(16);
        ActorRef<ContainerDmaActor.Command> side = side(new CueBackend(small));
        assertEquals(new ContainerDmaActor.OrderFailed("discard-block-size 2048 is smaller than the IOMMU's minimum "
                + "page size 4096"), open(side, OptionalLong.of(PAGE / 2)));
        assertEquals(1, small.closes, "the IOMMU the failed open had opened is closed");
        assertEquals(new ContainerDmaActor.Snapshot(List.of(), 0, Optional.empty()),
                order(side, ContainerDmaActor.Report::new));

        // A block of exactly one page fits.
        assertEquals(new ContainerDmaActor.Opened(small.info()), open(side, OptionalLong.of(PAGE)));
        assertEquals(new ContainerDmaActor.OrderFailed("container c0 has its IOMMU open already"),
                open(side, OptionalLong.empty()));
        assertEquals(new ContainerDmaActor.Snapshot(List.of(), 0, Optional.of(small.info())),
                order(side, ContainerDmaActor.Report::new));

        ActorRef<ContainerDmaActor.Command> refused = side(new CueBackend(iommu(16)));
        assertEquals(new ContainerDmaActor.OrderFailed("no such group: bad"),
                order(refused, r -> new ContainerDmaActor.Open("bad", OptionalLong.empty(), r)));
        assertEquals(new ContainerDmaActor.Snapshot(List.of(), 0, Optional.empty()),
                order(refused, ContainerDmaActor.Report::new), "a refused open leaves the side serving");
    }

    @Test
    void groupsJoinAndLeaveAnOpenIommuAndOrdersOnAClosedOneAreRefused() {
        CueBackend backend = new CueBackend(iommu(16));
        ActorRef<ContainerDmaActor.Command> side = side(backend);
        ContainerDmaActor.OrderFailed notOpen = new ContainerDmaActor.OrderFailed("container c0 has no open IOMMU");
        assertEquals(notOpen, order(side, r -> new ContainerDmaActor.Join("g1", r)));
        assertEquals(notOpen, apply(side, List.of(), List.of(mapping(0, 1)), OptionalLong.empty()));

        open(side, OptionalLong.empty());
        assertEquals(ContainerDmaActor.Done.INSTANCE, order(side, r -> new ContainerDmaActor.Join("g1", r)));
        assertEquals(new ContainerDmaActor.OrderFailed("cannot attach group bad"),
                order(side, r -> new ContainerDmaActor.Join("bad", r)));
        assertEquals(List.of("g0", "g1"), backend.groups);
        assertEquals(ContainerDmaActor.Done.INSTANCE, order(side, r -> new ContainerDmaActor.Leave("g0", r)));
        assertEquals(new ContainerDmaActor.OrderFailed("group g0 is not in the context"),
                order(side, r -> new ContainerDmaActor.Leave("g0", r)));
        assertEquals(List.of("g1"), backend.groups);
    }

    @Test
    void closingReportsThePinnedBytesOnceAndAClosedIommuHasNothingToReleaseOrRestore() {
        CueIommu iommu = iommu(16);
        ActorRef<ContainerDmaActor.Command> side = side(new CueBackend(iommu));
        open(side, OptionalLong.empty());
        assertEquals(ContainerDmaActor.Done.INSTANCE, apply(side, List.of(), List.of(mapping(0, 2), mapping(4, 3)),
                OptionalLong.empty()));
        assertEquals(new ContainerDmaActor.Closed(5 * PAGE), order(side, ContainerDmaActor.Close::new));
        assertEquals(1, iommu.closes);
        assertEquals(new ContainerDmaActor.Closed(0), order(side, ContainerDmaActor.Close::new));
        assertEquals(1, iommu.closes, "a closed IOMMU is not closed again");

        AddressRange block = AddressRange.of(0, 4 * PAGE);
        assertEquals(new ContainerDmaActor.BlocksOutcome(List.of(), List.of()),
                order(side, r -> new ContainerDmaActor.Release(List.of(block), r)));
        assertEquals(new ContainerDmaActor.BlocksOutcome(List.of(), List.of()), order(side,
                r -> new ContainerDmaActor.Restore(List.of(new ContainerDmaActor.BlockMappings(block,
                        List.of(mapping(0, 2)))), r)));
        assertEquals(new ContainerDmaActor.Snapshot(List.of(), 0, Optional.empty()),
                order(side, ContainerDmaActor.Report::new));
        assertEquals(List.of("map 0", "map 16384"), iommu.log, "nothing touched the closed IOMMU");
    }

    @Test
    void aRefusedUpdateUnmapsWhatItMappedAndMapsAgainWhatItUnmapped() {
        // Page 12 is refused: the update unmaps [0, 4) (two mappings) and maps 8, then fails at 12.
        CueIommu iommu = new CueIommu(ModelIommu.BACKEND, 16, Set.of(12 * PAGE), Set.of());
        ActorRef<ContainerDmaActor.Command> side = side(new CueBackend(iommu));
        open(side, OptionalLong.empty());
        List<DmaMapping> before = List.of(mapping(0, 1), mapping(2, 2), mapping(6, 1));
        apply(side, List.of(), before, OptionalLong.empty());
        iommu.log.clear();

        ContainerDmaActor.OrderReply reply = apply(side, List.of(AddressRange.of(0, 4 * PAGE)),
                List.of(mapping(8, 2), mapping(12, 1)), OptionalLong.empty());
        assertEquals(new ContainerDmaActor.OrderFailed("map refused at " + 12 * PAGE), reply);
        assertEquals(before, mappings(side));
        assertEquals(List.of("unmap 0", "map 32768", "unmap 32768", "map 0", "map 8192"), iommu.log);
        assertEquals(4 * PAGE, iommu.pinnedBytes());

        // The same update without the refused map goes through.
        assertEquals(ContainerDmaActor.Done.INSTANCE, apply(side, List.of(AddressRange.of(0, 4 * PAGE)),
                List.of(mapping(8, 2)), OptionalLong.empty()));
        assertEquals(List.of(mapping(6, 1), mapping(8, 2)), mappings(side));
    }

    @Test
    void aCoordinatedUpdateCountsItsMappingsAgainstTheLimitBeforeAnythingIsPinned() {
        CueIommu iommu = iommu(4);
        ActorRef<ContainerDmaActor.Command> side = side(new CueBackend(iommu));
        OptionalLong block = OptionalLong.of(PAGE);
        open(side, block);
        apply(side, List.of(), List.of(mapping(0, 1), mapping(1, 1), mapping(2, 1)), block);

        // 3 held - 1 removed + 2 added = 4: exactly the limit.
        assertEquals(ContainerDmaActor.Done.INSTANCE, apply(side, List.of(AddressRange.of(0, PAGE)),
                List.of(mapping(8, 1), mapping(9, 1)), block));
        iommu.log.clear();
        // 4 held + 1 = 5: refused before the IOMMU is touched, naming both numbers.
        assertEquals(new ContainerDmaActor.OrderFailed("guest memory needs 5 IOMMU mappings (one per "
                + "discard-block-size block of 4096 bytes) but the model IOMMU accepts at most 4"),
                apply(side, List.of(), List.of(mapping(10, 1)), block));
        assertEquals(List.of(), iommu.log);
        assertEquals(List.of(mapping(1, 1), mapping(2, 1), mapping(8, 1), mapping(9, 1)), mappings(side));
    }

    @Test
    void onTheType1BackendTheLimitRefusalNamesTheKernelParameter() {
        CueIommu iommu = new CueIommu(VfioType1Iommu.BACKEND, 1, Set.of(), Set.of());
        ActorRef<ContainerDmaActor.Command> side = side(new CueBackend(iommu));
        OptionalLong block = OptionalLong.of(PAGE);
        open(side, block);
        assertEquals(new ContainerDmaActor.OrderFailed("guest memory needs 2 IOMMU mappings (one per "
                + "discard-block-size block of 4096 bytes) but the vfio-type1 IOMMU accepts at most 1 (type1's "
                + "dma_entry_limit, see /sys/module/vfio_iommu_type1/parameters/dma_entry_limit)"),
                apply(side, List.of(), List.of(mapping(0, 1), mapping(1, 1)), block));
    }

    @Test
    void blocksAreReleasedAndRestoredOneByOneAndAFailedBlockKeepsItsOldState() {
        // Unmapping the block at page 4 is refused; mapping page 13 (the second mapping of block [12, 16)) is refused.
        CueIommu iommu = new CueIommu(ModelIommu.BACKEND, 16, Set.of(13 * PAGE), Set.of(4 * PAGE));
        ActorRef<ContainerDmaActor.Command> side = side(new CueBackend(iommu));
        open(side, OptionalLong.of(4 * PAGE));
        apply(side, List.of(), List.of(mapping(0, 4), mapping(4, 4), mapping(8, 4)), OptionalLong.of(4 * PAGE));

        AddressRange b0 = AddressRange.of(0, 4 * PAGE);
        AddressRange b1 = AddressRange.of(4 * PAGE, 4 * PAGE);
        AddressRange b2 = AddressRange.of(8 * PAGE, 4 * PAGE);
        AddressRange b3 = AddressRange.of(12 * PAGE, 4 * PAGE);
        assertEquals(new ContainerDmaActor.BlocksOutcome(List.of(b1), List.of("unmap refused at " + 4 * PAGE)),
                order(side, r -> new ContainerDmaActor.Release(List.of(b0, b1, b2), r)));
        assertEquals(List.of(mapping(4, 4)), mappings(side));

        iommu.log.clear();
        assertEquals(new ContainerDmaActor.BlocksOutcome(List.of(b3), List.of("map refused at " + 13 * PAGE)),
                order(side, r -> new ContainerDmaActor.Restore(List.of(
                        new ContainerDmaActor.BlockMappings(b0, List.of(mapping(0, 2), mapping(2, 2))),
                        new ContainerDmaActor.BlockMappings(b3, List.of(mapping(12, 1), mapping(13, 1))),
                        new ContainerDmaActor.BlockMappings(b2, List.of(mapping(8, 4)))), r)));
        assertEquals(List.of(mapping(0, 2), mapping(2, 2), mapping(4, 4), mapping(8, 4)), mappings(side));
        assertEquals(List.of("map 0", "map 8192", "map 49152", "unmap 49152", "map 32768"), iommu.log);
    }

    @Test
    void aSideStoppedWithItsIommuOpenClosesItOnceInPostStop() {
        CueIommu open = iommu(16);
        ActorRef<ContainerDmaActor.Command> side = side(new CueBackend(open));
        open(side, OptionalLong.empty());
        apply(side, List.of(), List.of(mapping(0, 1)), OptionalLong.empty());
        TestProbe<Object> watcher = KIT.kit().createTestProbe();
        KIT.kit().stop(side);
        watcher.expectTerminated(side);
        assertEquals(1, open.closes);
        assertEquals(List.of(), open.mappings());

        CueIommu closed = iommu(16);
        ActorRef<ContainerDmaActor.Command> closedSide = side(new CueBackend(closed));
        open(closedSide, OptionalLong.empty());
        order(closedSide, ContainerDmaActor.Close::new);
        KIT.kit().stop(closedSide);
        watcher.expectTerminated(closedSide);
        assertEquals(1, closed.closes, "PostStop does not close an IOMMU that the order closed");
        assertEquals(List.of(), closed.mappings());
    }
}
