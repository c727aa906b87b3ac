package io.actovisor.actors.vfio;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.actors.discard.DiscardManager;
import io.actovisor.actors.discard.DiscardMode;
import io.actovisor.actors.memory.AddressSpaceActor;
import io.actovisor.actors.memory.MemoryListener;
import io.actovisor.actors.testing.NativeTestKit;
import io.actovisor.devices.iommu.DmaMapping;
import io.actovisor.devices.iommu.DmaPermissions;
import io.actovisor.devices.iommu.IommuInfo;
import io.actovisor.devices.iommu.model.ModelIommu;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.FlatView;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.MemoryRegion;
import io.actovisor.memory.Section;
import java.util.List;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * Invariant 3 at the container itself: a probe stands in for the address space and sends the container its
 * {@link MemoryListener.Update}s; the container maps exactly the RAM and ROM of each update (aligned inward to its
 * IOMMU's page, read-only for ROM, in blocks when coordinated), and a refused update leaves its IOMMU as it was.
 */
class VfioContainerMirroringTest {
    private static final long PAGE = 4096;
    private static final long BLOCK = 4 * PAGE;
    @RegisterExtension
    static final NativeTestKit KIT = new NativeTestKit();
    private HostMemory memory;

    @AfterEach
    void free() {
        if (memory != null) {
            memory.close();
        }
    }

    /** A container with one group attached, subscribed to a probe; {@code listener} receives the updates. */
    private final class Mirror {
        final TestProbe<AddressSpaceActor.Command> space = KIT.kit().createTestProbe();
        final TestProbe<MemoryListener.Reply> replies = KIT.kit().createTestProbe();
        final ActorRef<VfioContainerActor.Command> container;
        final ActorRef<MemoryListener.Update> listener;
        private long commit = 1;

        Mirror(IommuBackend backend, DiscardMode mode) {
            memory = HostMemory.anonymous("mirror-ram", 64 * PAGE);
            container = KIT.kit().spawn(VfioContainerActor.create("c0", space.ref(), backend, mode, BLOCK),
                    "c0-" + System.nanoTime(), VfioContainerActor.DISPATCHER);
            TestProbe<VfioContainerActor.AttachResult> attached = KIT.kit().createTestProbe();
            container.tell(new VfioContainerActor.AttachGroup("g0", KIT.kit().createTestProbe().ref(), attached.ref()));
            AddressSpaceActor.Subscribe subscribe = space.expectMessageClass(AddressSpaceActor.Subscribe.class);
            assertEquals("c0", subscribe.name());
            listener = subscribe.listener();
            subscribe.replyTo().tell(new AddressSpaceActor.Subscribed("c0", 0));
            assertEquals(new VfioContainerActor.GroupAttached("c0", "g0", 0), attached.receiveMessage());
        }

        MemoryListener.Reply update(List<Section> del, List<Section> add) {
            long id = commit++;
            listener.tell(new MemoryListener.Update(id, del, add, false, replies.ref()));
            MemoryListener.Reply reply = replies.receiveMessage();
            assertEquals(id, reply.commitId());
            return reply;
        }

        VfioContainerActor.State state() {
            TestProbe<VfioContainerActor.State> probe = KIT.kit().createTestProbe();
            container.tell(new VfioContainerActor.GetState(probe.ref()));
            return probe.receiveMessage();
        }

        List<DmaMapping> mappings() {
            return state().mappings();
        }
    }

    private MemoryRegion ram(String name, long gpa, long offset, long size) {
        return MemoryRegion.ram(name, AddressRange.of(gpa, size), memory, offset);
    }

    private static List<Section> sections(MemoryRegion... regions) {
        return FlatView.of(List.of(regions)).sections();
    }

    private DmaMapping mapping(long iova, long offset, long size, DmaPermissions permissions) {
        return new DmaMapping(AddressRange.of(iova, size), memory.base().checkedAdd(offset), permissions);
    }

    @Test
    void ramIsMappedReadWriteRomReadOnlyAndMmioNotAtAll() {
        Mirror m = new Mirror(IommuBackend.model(65535), DiscardMode.INHIBIT);
        List<Section> add = sections(ram("ram", 0, 0, 8 * PAGE),
                MemoryRegion.rom("rom", AddressRange.of(16 * PAGE, 2 * PAGE), memory, 8 * PAGE),
                MemoryRegion.mmio("uart", AddressRange.of(32 * PAGE, PAGE), "uart"),
                MemoryRegion.reserved("hole", AddressRange.of(40 * PAGE, PAGE)));
        assertEquals(new MemoryListener.Applied(1, "c0"), m.update(List.of(), add));
        assertEquals(List.of(mapping(0, 0, 8 * PAGE, DmaPermissions.READ_WRITE),
                mapping(16 * PAGE, 8 * PAGE, 2 * PAGE, DmaPermissions.READ)), m.mappings());
        assertEquals(10 * PAGE, m.state().pinnedBytes());

        assertEquals(new MemoryListener.Applied(2, "c0"), m.update(add.subList(0, 1), List.of()));
        assertEquals(List.of(mapping(16 * PAGE, 8 * PAGE, 2 * PAGE, DmaPermissions.READ)), m.mappings());
    }

    @Test
    void sectionsAreAlignedInwardToTheIommuPageAndTooSmallOnesAreLeftOut() {
        long big = 16 * PAGE; // 64 KiB pages, as on some ARM hosts
        IommuBackend coarse = IommuBackend.shared(ModelIommu.BACKEND, () -> ModelIommu.create(new IommuInfo(big,
                65535, List.of(ModelIommu.DEFAULT_IOVA_RANGE))));
        Mirror m = new Mirror(coarse, DiscardMode.INHIBIT);
        // The IOMMU wants the host address 64 KiB-aligned too: place the region so that guest page 16 lands on one.
        long offset = Math.floorMod(-(memory.base().value() + 12 * PAGE), big);
        assertEquals(new MemoryListener.Applied(1, "c0"), m.update(List.of(), sections(ram("ragged", 4 * PAGE,
                offset, 40 * PAGE), ram("tiny", 48 * PAGE, 0, 8 * PAGE))));
        // [4, 44) pages aligns inward to [16, 32): one 64 KiB page; the 8-page region holds no whole 64 KiB page.
        assertEquals(List.of(mapping(16 * PAGE, offset + 12 * PAGE, big, DmaPermissions.READ_WRITE)),
                m.mappings());
    }

    @Test
    void aRefusedUpdateMapsBackWhatItUnmappedAndUnmapsWhatItMapped() {
        Mirror m = new Mirror(IommuBackend.model(3), DiscardMode.INHIBIT);
        List<Section> first = sections(ram("a", 0, 0, 4 * PAGE), ram("b", 8 * PAGE, 8 * PAGE, 4 * PAGE));
        m.update(List.of(), first);
        List<DmaMapping> before = m.mappings();
        assertEquals(2, before.size());
        // Remove a, then add three regions: the third map exceeds the limit of 3.
        MemoryListener.Refused refused = assertInstanceOf(MemoryListener.Refused.class, m.update(first.subList(0, 1),
                sections(ram("c", 16 * PAGE, 16 * PAGE, PAGE), ram("d", 20 * PAGE, 20 * PAGE, PAGE),
                        ram("e", 24 * PAGE, 24 * PAGE, PAGE))));
        assertEquals("c0", refused.listener());
        assertTrue(refused.reason().startsWith("container c0 (model) refused commit 2: "), refused.reason());
        assertTrue(refused.reason().contains("limit of 3 mappings"), refused.reason());
        assertEquals(before, m.mappings(), "the IOMMU is as it was before the refused update");
        assertEquals(8 * PAGE, m.state().pinnedBytes());
        // The container's picture of the view did not take the refused update either: a later removal of b works.
        assertEquals(new MemoryListener.Applied(3, "c0"), m.update(first.subList(1, 2), List.of()));
        assertEquals(List.of(mapping(0, 0, 4 * PAGE, DmaPermissions.READ_WRITE)), m.mappings());
    }

    @Test
    void aCoordinatedContainerMapsInBlocksAndLeavesReleasedBlocksOut() {
        Mirror m = new Mirror(IommuBackend.model(65535), DiscardMode.COORDINATED);
        List<Section> ram = sections(ram("ram", 2 * PAGE, 0, 9 * PAGE));
        m.update(List.of(), ram);
        // [2, 11) pages in blocks of 4 pages: [2, 4), [4, 8), [8, 11).
        assertEquals(List.of(mapping(2 * PAGE, 0, 2 * PAGE, DmaPermissions.READ_WRITE),
                mapping(4 * PAGE, 2 * PAGE, 4 * PAGE, DmaPermissions.READ_WRITE),
                mapping(8 * PAGE, 6 * PAGE, 3 * PAGE, DmaPermissions.READ_WRITE)), m.mappings());

        DiscardManager.PinOwner owner = describe(m);
        TestProbe<DiscardManager.BlockReply> reply = KIT.kit().createTestProbe();
        owner.port().tell(new DiscardManager.ReleaseBlocks(List.of(AddressRange.of(4 * PAGE, BLOCK)), reply.ref()));
        assertEquals(new DiscardManager.BlocksDone("c0"), reply.receiveMessage());
        assertEquals(List.of(AddressRange.of(4 * PAGE, BLOCK)), m.state().releasedBlocks());

        // Removing and adding the region again (a priority change, say) maps every block but the released one.
        m.update(ram, List.of());
        assertEquals(List.of(), m.mappings());
        m.update(List.of(), ram);
        assertEquals(List.of(mapping(2 * PAGE, 0, 2 * PAGE, DmaPermissions.READ_WRITE),
                mapping(8 * PAGE, 6 * PAGE, 3 * PAGE, DmaPermissions.READ_WRITE)), m.mappings());

        owner.port().tell(new DiscardManager.RestoreBlocks(List.of(AddressRange.of(4 * PAGE, BLOCK)), reply.ref()));
        assertEquals(new DiscardManager.BlocksDone("c0"), reply.receiveMessage());
        assertEquals(3, m.mappings().size());
        assertEquals(List.of(), m.state().releasedBlocks());
    }

    @Test
    void anInhibitContainerRefusesToReleaseBlocks() {
        Mirror m = new Mirror(IommuBackend.model(65535), DiscardMode.INHIBIT);
        m.update(List.of(), sections(ram("ram", 0, 0, 8 * PAGE)));
        TestProbe<DiscardManager.BlockReply> reply = KIT.kit().createTestProbe();
        List<AddressRange> block = List.of(AddressRange.of(0, BLOCK));
        describe(m).port().tell(new DiscardManager.ReleaseBlocks(block, reply.ref()));
        assertEquals(new DiscardManager.BlocksFailed("c0", block, "container c0 has discard = inhibit and does not "
                + "unmap blocks on request"), reply.receiveMessage());
        assertEquals(1, m.mappings().size());
    }

    @Test
    void theLastGroupLeavingUnsubscribesAndClosesTheIommu() {
        Mirror m = new Mirror(IommuBackend.model(65535), DiscardMode.INHIBIT);
        m.update(List.of(), sections(ram("ram", 0, 0, 8 * PAGE)));
        TestProbe<VfioContainerActor.DetachResult> detached = KIT.kit().createTestProbe();
        m.container.tell(new VfioContainerActor.DetachGroup("g0", detached.ref()));
        assertEquals(new VfioContainerActor.GroupDetached("c0", "g0", true), detached.receiveMessage());
        assertEquals("c0", m.space.expectMessageClass(AddressSpaceActor.Unsubscribe.class).name());
        VfioContainerActor.State state = m.state();
        assertEquals(List.of(), state.mappings());
        assertEquals(0, state.pinnedBytes());
        assertEquals(false, state.subscribed());
        // An update already on its way when the IOMMU closed is acknowledged and mirrors nothing.
        assertEquals(new MemoryListener.Applied(2, "c0"), m.update(List.of(), sections(ram("late", 16 * PAGE, 0,
                PAGE))));
        assertEquals(List.of(), m.state().mappings());
    }

    private static DiscardManager.PinOwner describe(Mirror m) {
        TestProbe<VfioContainerActor.Description> probe = KIT.kit().createTestProbe();
        m.container.tell(new VfioContainerActor.Describe(probe.ref()));
        return probe.receiveMessage().pinOwner();
    }
}
