package io.actovisor.actors.discard;

import static io.actovisor.actors.testing.ActorTree.PAGE;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;

import io.actovisor.actors.balloon.BalloonActor;
import io.actovisor.actors.balloon.BalloonSettings;
import io.actovisor.actors.memory.AddressSpaceActor;
import io.actovisor.actors.testing.ActorTree;
import io.actovisor.actors.testing.NativeTestKit;
import io.actovisor.actors.vfio.ContainerDmaActor;
import io.actovisor.actors.vfio.VfioContainerActor;
import io.actovisor.actors.vfio.VfioGroupActor;
import io.actovisor.devices.iommu.DmaMapping;
import io.actovisor.devices.iommu.pinned.PinnedIommu;
import io.actovisor.kernel.uring.IoUring;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.sys.ProcessResources;
import io.actovisor.memory.testing.NativeRequirement;
import java.util.Arrays;
import java.util.List;
import java.util.stream.LongStream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * Item 6(a) of coordinated discard on {@code pinned}, with the host's own numbers: a fully ballooned block leaves host
 * RAM (mincore) and the kernel's pin count ({@code VmPin}) before the answer, the block has no mapping and a device
 * read of it fails, and after the deflate it is resident, pinned and mapped again with device and CPU agreeing. The
 * nested 6.1 guest runs this class too, where the pinned backend releases pins with a ring per mapping.
 */
class CoordinatedPinnedResidencyTest {
    private static final long BLOCK = 16 * PAGE;
    private static final int BLOCKS = 4;
    @RegisterExtension
    static final NativeTestKit KIT = new NativeTestKit();

    @BeforeAll
    static void start() {
        NativeRequirement.require("io_uring", IoUring.unavailabilityCause());
    }

    @Test
    void aDiscardedBlockLeavesHostRamAndItsPinsAndComesBackMappedOnDeflate() {
        long pinnedBefore = ProcessResources.statusKib("VmPin");
        long pages = BLOCKS * BLOCK / PAGE;
        try (ActorTree tree = new ActorTree(KIT.kit(), pages, BalloonSettings.DEFAULT, BLOCK)) {
            tree.container("c0", tree.pins.backend(PinnedIommu.BACKEND, PinnedIommu::open), DiscardMode.COORDINATED);
            tree.group("g0", DiscardMode.COORDINATED);
            byte[] a = new byte[(int) PAGE];
            Arrays.fill(a, (byte) 'A');
            for (long page = 0; page < pages; page++) {
                tree.memory.write(tree.memory.base().checkedAdd(page * PAGE), a);
            }
            tree.commit(new AddressSpaceActor.AddRegion(tree.ram("ram", 0, 0, pages)));
            tree.discard.tell(new DiscardManager.SetGuestContract(true));
            assertInstanceOf(VfioGroupActor.Attached.class, tree.attach("g0", "c0"));
            AddressRange all = tree.memory.hostRange();
            AddressRange hostBlock = AddressRange.of(tree.memory.base().value() + BLOCK, BLOCK);
            assertEquals(BLOCKS * BLOCK, tree.memory.residentBytes(all));
            assertEquals(pinnedBefore + BLOCKS * BLOCK / 1024, ProcessResources.statusKib("VmPin"));

            long[] frames = LongStream.range(BLOCK / PAGE, 2 * BLOCK / PAGE).toArray();
            assertEquals(BLOCK / PAGE, tree.inflate(frames).pagesDiscarded());
            assertEquals((BLOCKS - 1) * BLOCK, tree.memory.residentBytes(all), "host RSS dropped by the block");
            assertEquals(0, tree.memory.residentBytes(hostBlock));
            assertEquals(pinnedBefore + (BLOCKS - 1) * BLOCK / 1024, ProcessResources.statusKib("VmPin"),
                    "the block's pins are gone");
            assertEquals(List.of(AddressRange.of(0, BLOCK), AddressRange.of(2 * BLOCK, BLOCK),
                    AddressRange.of(3 * BLOCK, BLOCK)), tree.containerState("c0").mappings().stream()
                    .map(DmaMapping::iova).toList(), "the block's mapping is gone");
            assertInstanceOf(ContainerDmaActor.DmaFailed.class, tree.ask(ContainerDmaActor.ReadResult.class,
                    r -> new VfioContainerActor.Dma(new ContainerDmaActor.DmaRead(BLOCK + 3 * PAGE, 16, r)),
                    tree.containers.get("c0")),
                    "a device read of the discarded block fails, it never returns the old 'A'");
            assertEquals(0, tree.memory.residentBytes(hostBlock), "the failed device read touched nothing");
            tree.assertInvariants("with the block discarded");

            assertEquals(new BalloonActor.DeflateResult(BLOCK / PAGE, List.of()), tree.deflate(frames));
            assertEquals(BLOCKS * BLOCK, tree.memory.residentBytes(all), "populated again by the remap");
            assertEquals(pinnedBefore + BLOCKS * BLOCK / 1024, ProcessResources.statusKib("VmPin"), "pinned again");
            assertEquals(BLOCKS, tree.containerState("c0").mappings().size());
            byte[] fresh = new byte[16];
            assertArrayEquals(fresh, tree.memory.read(tree.memory.base().checkedAdd(BLOCK + 3 * PAGE), 16),
                    "the CPU reads a fresh page");
            assertArrayEquals(fresh, ((ContainerDmaActor.DataRead) tree.ask(ContainerDmaActor.ReadResult.class,
                    r -> new VfioContainerActor.Dma(new ContainerDmaActor.DmaRead(BLOCK + 3 * PAGE, 16, r)),
                    tree.containers.get("c0"))).data(), "so does the device");
            byte[] b = new byte[16];
            Arrays.fill(b, (byte) 'B');
            tree.memory.write(tree.memory.base().checkedAdd(BLOCK + 3 * PAGE), b);
            assertArrayEquals(b, ((ContainerDmaActor.DataRead) tree.ask(ContainerDmaActor.ReadResult.class,
                    r -> new VfioContainerActor.Dma(new ContainerDmaActor.DmaRead(BLOCK + 3 * PAGE, 16, r)),
                    tree.containers.get("c0"))).data(), "device and CPU read the same data");
            tree.assertInvariants("after the deflate");
        }
        assertEquals(pinnedBefore, ProcessResources.statusKib("VmPin"), "nothing left pinned");
    }
}
