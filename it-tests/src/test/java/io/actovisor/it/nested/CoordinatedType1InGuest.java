package io.actovisor.it.nested;

import static io.actovisor.actors.testing.ActorTree.PAGE;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.actors.balloon.BalloonActor;
import io.actovisor.actors.balloon.BalloonSettings;
import io.actovisor.actors.discard.DiscardManager;
import io.actovisor.actors.discard.DiscardMode;
import io.actovisor.actors.memory.AddressSpaceActor;
import io.actovisor.actors.testing.ActorTree;
import io.actovisor.actors.testing.NativeTestKit;
import io.actovisor.actors.vfio.IommuBackend;
import io.actovisor.actors.vfio.ContainerDmaActor;
import io.actovisor.actors.vfio.VfioContainerActor;
import io.actovisor.actors.vfio.VfioGroupActor;
import io.actovisor.devices.iommu.DmaMapping;
import io.actovisor.devices.iommu.vfio.VfioType1Iommu;
import io.actovisor.kernel.vfio.Vfio;
import io.actovisor.kernel.vfio.VfioDevice;
import io.actovisor.devices.edu.EduDevice;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.HostAddress;
import io.actovisor.memory.sys.ProcessResources;
import io.actovisor.memory.testing.NativeRequirement;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.atomic.AtomicReference;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.LongStream;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Coordinated discard on the real {@code vfio-type1} backend, run <em>inside</em> the nested VFIO guest (QEMU TCG,
 * intel-iommu, the edu device bound to vfio-pci) by {@link NestedCoordinatedType1Test}; its name does not end in
 * {@code Test}, so the host's own test run leaves it out. Each step is checked against what the kernel says: the
 * type1 driver's free DMA entries ({@code VFIO_IOMMU_GET_INFO}), the pins it charges to {@code VmLck}, the
 * residency of the VM's RAM ({@code mincore}), the edu device's DMA and the guest kernel's DMAR fault log.
 */
class CoordinatedType1InGuest {
    private static final Logger LOG = LoggerFactory.getLogger(CoordinatedType1InGuest.class);
    private static final Path DMA_ENTRY_LIMIT = Path.of("/sys/module/vfio_iommu_type1/parameters/dma_entry_limit");
    private static final long BLOCK = 2L << 20;
    private static final int BLOCKS = 4;
    private static final long PAGES_PER_BLOCK = BLOCK / PAGE;
    /** Guest-physical (= IOVA) base of guest RAM: block-aligned, inside edu's 28-bit DMA mask. */
    private static final long RAM_BASE = 0x20_0000;
    /** The block the guest balloons. */
    private static final int DISCARDED = 1;
    private static final long BLOCK_IOVA = RAM_BASE + DISCARDED * BLOCK;
    /** The page of the discarded block the device reads. */
    private static final long TARGET_IOVA = BLOCK_IOVA + 5 * PAGE;
    /** Pages of block 0 the device copies to: what it read lands here, for the CPU to see. */
    private static final long READBACK_IOVA = RAM_BASE;
    private static final long SEED_IOVA = RAM_BASE + PAGE;
    private static final int DMA_BYTES = 2048;
    private static final Pattern DMAR_FAULT = Pattern.compile("DMAR: .*fault addr (?:0x)?([0-9a-fA-F]+)");
    @RegisterExtension
    static final NativeTestKit KIT = new NativeTestKit();
    private static String device;
    private static int group;

    @BeforeAll
    static void start() {
        NativeRequirement.require("VFIO", Vfio.unavailabilityCause());
        device = findEdu(Vfio.DEFAULT_SYSFS);
        group = Vfio.groupOf(Vfio.DEFAULT_SYSFS, device).orElseThrow();
    }

    @Test
    void aFullyBalloonedBlockIsUnmappedFromType1BeforeItsDiscardAndMappedAgainByTheDeflate() throws Exception {
        int limit = dmaEntryLimit();
        long lockedBefore = lockedKib();
        try (ActorTree tree = new ActorTree(KIT.kit(), BLOCKS * PAGES_PER_BLOCK, BalloonSettings.DEFAULT, BLOCK)) {
            // Watched, so that the tree's invariant 1 sees every madvise against type1's mappings.
            AtomicReference<VfioType1Iommu> type1 = new AtomicReference<>();
            ActorRef container = new ActorRef(tree.container("c0", tree.pins.backend(VfioType1Iommu.BACKEND, () -> {
                type1.set(VfioType1Iommu.open(List.of(group)));
                return type1.get();
            }), DiscardMode.COORDINATED));
            String groupId = Integer.toString(group);
            tree.group(groupId, DiscardMode.COORDINATED);
            for (long page = 0; page < BLOCKS * PAGES_PER_BLOCK; page++) {
                fill(tree, RAM_BASE + page * PAGE, 'A');
            }
            tree.commit(new AddressSpaceActor.AddRegion(tree.ram("ram", RAM_BASE / PAGE, 0,
                    BLOCKS * PAGES_PER_BLOCK)));
            tree.discard.tell(new DiscardManager.SetGuestContract(true));
            assertInstanceOf(VfioGroupActor.Attached.class, tree.attach(groupId, "c0"));

            List<AddressRange> blocks = LongStream.range(0, BLOCKS).mapToObj(b -> AddressRange.of(RAM_BASE + b * BLOCK,
                    BLOCK)).toList();
            assertEquals(blocks, mapped(tree), "guest RAM mapped in type1 one mapping per block");
            container.type1 = type1;
            assertEquals(limit - BLOCKS, dmaAvailable(tree, container), "type1 counts one DMA entry per block");
            assertEquals(lockedBefore + BLOCKS * BLOCK / 1024, lockedKib(), "type1 pinned the RAM");
            long residentBefore = tree.memory.residentBytes(tree.memory.hostRange());
            assertEquals(BLOCKS * BLOCK, residentBefore);

            EduDevice edu = openEdu(type1.get());
            try {
                assertEquals('A', deviceRead(tree, container, edu, TARGET_IOVA), "the device reads the block");

                long firstFrame = BLOCK_IOVA / PAGE;
                long[] frames = LongStream.range(firstFrame, firstFrame + PAGES_PER_BLOCK).toArray();
                BalloonActor.InflateResult inflated = tree.inflate(frames);
                assertEquals(PAGES_PER_BLOCK, inflated.pagesDiscarded(), inflated.toString());
                assertEquals(List.of(AddressRange.of(BLOCK_IOVA, BLOCK)), tree.containerState("c0").releasedBlocks());
                assertEquals(blocks.stream().filter(b -> b.base() != BLOCK_IOVA).toList(), mapped(tree),
                        "the block's mapping is gone");
                assertEquals(limit - BLOCKS + 1, dmaAvailable(tree, container), "type1 freed the block's entry");
                long lockedWhileDiscarded = lockedKib();
                assertEquals(lockedBefore + (BLOCKS - 1) * BLOCK / 1024, lockedWhileDiscarded,
                        "type1 unpinned the block");
                long residentDiscarded = tree.memory.residentBytes(tree.memory.hostRange());
                assertEquals(residentBefore - BLOCK, residentDiscarded, "the block left host RAM");
                assertEquals(0, tree.memory.residentBytes(AddressRange.of(tree.memory.base().value()
                        + DISCARDED * BLOCK, BLOCK)));

                // The device's buffer holds 'Z' first. The IOMMU blocks the DMA from the discarded block; QEMU's edu
                // ignores the error and its buffer receives zeros (QEMU's unassigned memory): never the old 'A'.
                fill(tree, SEED_IOVA, 'Z');
                String dmesgBefore = dmesg();
                byte blocked = deviceRead(tree, container, edu, SEED_IOVA, TARGET_IOVA);
                assertEquals(0, blocked, "the blocked DMA brought zeros into the device, not the old data 'A'");
                String fault = awaitDmarFault(dmesgBefore, TARGET_IOVA);
                assertEquals(0, tree.memory.residentBytes(AddressRange.of(tree.memory.base().value()
                        + DISCARDED * BLOCK, BLOCK)), "the blocked access did not bring the block back");

                BalloonActor.DeflateResult deflated = tree.deflate(frames);
                assertEquals(PAGES_PER_BLOCK, deflated.pagesReturned());
                assertEquals(List.of(), tree.containerState("c0").releasedBlocks());
                assertEquals(blocks, mapped(tree), "mapped again before the deflate was answered");
                assertEquals(limit - BLOCKS, dmaAvailable(tree, container));
                assertEquals(lockedBefore + BLOCKS * BLOCK / 1024, lockedKib(), "pinned again");
                long residentAfter = tree.memory.residentBytes(tree.memory.hostRange());
                assertEquals(residentBefore, residentAfter, "the remap populated the block");
                HostAddress target = host(tree, TARGET_IOVA);
                assertEquals(0, tree.memory.readByte(target), "the CPU reads a fresh page");
                assertEquals(0, deviceRead(tree, container, edu, TARGET_IOVA), "so does the device");
                fill(tree, TARGET_IOVA, 'B');
                assertEquals('B', deviceRead(tree, container, edu, TARGET_IOVA), "device and CPU agree");
                tree.assertInvariants("after the deflate on type1");
                LOG.info("nested type1 coordinated discard of block {}: dma entries free {} -> {} -> {}; VmLck kB {}"
                        + " -> {} -> {}; resident bytes {} -> {} -> {}; blocked DMA read {}, fault log: {}",
                        AddressRange.of(BLOCK_IOVA, BLOCK), limit - BLOCKS, limit - BLOCKS + 1, limit - BLOCKS,
                        lockedBefore + BLOCKS * BLOCK / 1024, lockedWhileDiscarded, lockedKib(), residentBefore,
                        residentDiscarded, residentAfter, blocked, fault);
            } finally {
                edu.device().close();
            }
        }
        assertEquals(lockedBefore, lockedKib(), "nothing left pinned");
    }

    @Test
    void guestRamNeedingMoreBlocksThanDmaEntryLimitIsRefusedAtAttachNamingBothNumbers() throws Exception {
        int limit = dmaEntryLimit();
        long small = 64 << 10;
        long pagesPerBlock = small / PAGE;
        long lockedBefore = lockedKib();
        String groupId = Integer.toString(group);
        try (ActorTree tree = new ActorTree(KIT.kit(), (limit + 1) * pagesPerBlock, BalloonSettings.DEFAULT, small)) {
            tree.container("c0", IommuBackend.vfioType1(), DiscardMode.COORDINATED);
            tree.group(groupId, DiscardMode.COORDINATED);
            tree.commit(new AddressSpaceActor.AddRegion(tree.ram("ram", RAM_BASE / PAGE, 0,
                    (limit + 1) * pagesPerBlock)));
            VfioGroupActor.AttachFailed failed = assertInstanceOf(VfioGroupActor.AttachFailed.class,
                    tree.attach(groupId, "c0"));
            assertTrue(failed.reason().contains("guest memory needs " + (limit + 1) + " IOMMU mappings (one per "
                    + "discard-block-size block of 65536 bytes) but the vfio-type1 IOMMU accepts at most " + limit
                    + " (type1's dma_entry_limit"), failed.reason());
            assertEquals(List.of(), tree.containerState("c0").mappings());
            assertEquals(0, tree.discardState().coordinatedHolders());
            assertEquals(lockedBefore, lockedKib(), "nothing was pinned");
            LOG.info("nested type1: attach refused: {}", failed.reason());
        }
        try (ActorTree tree = new ActorTree(KIT.kit(), limit * pagesPerBlock, BalloonSettings.DEFAULT, small)) {
            ActorRef container = new ActorRef(tree.container("c0", IommuBackend.vfioType1(), DiscardMode.COORDINATED));
            tree.group(groupId, DiscardMode.COORDINATED);
            tree.commit(new AddressSpaceActor.AddRegion(tree.ram("ram", RAM_BASE / PAGE, 0, limit * pagesPerBlock)));
            assertInstanceOf(VfioGroupActor.Attached.class, tree.attach(groupId, "c0"));
            assertEquals(limit, tree.containerState("c0").mappings().size());
            assertEquals(0, dmaAvailable(tree, container), "exactly the limit: type1 has no entry left");
        }
        assertEquals(lockedBefore, lockedKib());
    }

    /**
     * The container under test and the type1 context its IOMMU wraps. The test calls that context (the kernel's
     * IOMMU info, the edu device of the group) from its own thread only between answered requests, while the
     * container is idle.
     */
    private static final class ActorRef {
        private final org.apache.pekko.actor.typed.ActorRef<VfioContainerActor.Command> ref;
        /** The type1 context under the watch, when the container's IOMMU is wrapped. */
        AtomicReference<VfioType1Iommu> type1;

        ActorRef(org.apache.pekko.actor.typed.ActorRef<VfioContainerActor.Command> ref) {
            this.ref = ref;
        }
    }

    private static List<AddressRange> mapped(ActorTree tree) {
        return tree.containerState("c0").mappings().stream().map(DmaMapping::iova).toList();
    }

    /** Free DMA entries as type1 reports them now ({@code VFIO_IOMMU_GET_INFO}, the DMA-available capability). */
    private static int dmaAvailable(ActorTree tree, ActorRef container) {
        if (container.type1 != null) {
            return container.type1.get().container().iommuInfo().dmaAvailable().orElseThrow();
        }
        // A container on the plain vfio-type1 backend: ask it, through its DMA side, for the kernel's info now.
        ContainerDmaActor.KernelInfoResult info = tree.ask(ContainerDmaActor.KernelInfoResult.class,
                r -> new VfioContainerActor.Dma(new ContainerDmaActor.ReadKernelInfo(r)), container.ref);
        if (info instanceof ContainerDmaActor.KernelInfo kernel) {
            return kernel.info().dmaAvailable().orElseThrow();
        }
        throw new AssertionError("the container could not read type1's info: " + info);
    }

    private static EduDevice openEdu(VfioType1Iommu iommu) {
        VfioDevice vfio = iommu.group(group).openDevice(device);
        vfio.enableBusMaster();
        return EduDevice.attach(vfio, Duration.ofSeconds(10));
    }

    private static HostAddress host(ActorTree tree, long iova) {
        return tree.memory.base().checkedAdd(iova - RAM_BASE);
    }

    private static void fill(ActorTree tree, long iova, char value) {
        byte[] bytes = new byte[(int) PAGE];
        Arrays.fill(bytes, (byte) value);
        tree.memory.write(host(tree, iova), bytes);
    }

    /** What the device reads at {@code iova}: it copies it into its buffer, then out to a page the CPU reads. */
    private static byte deviceRead(ActorTree tree, ActorRef container, EduDevice edu, long iova) {
        return deviceRead(tree, container, edu, -1, iova);
    }

    /** As above, with the device's buffer first loaded from {@code seedIova} (when not -1). */
    private static byte deviceRead(ActorTree tree, ActorRef container, EduDevice edu, long seedIova, long iova) {
        fill(tree, READBACK_IOVA, '\0');
        if (seedIova >= 0) {
            edu.copyToDevice(seedIova, 0, DMA_BYTES);
        }
        edu.copyToDevice(iova, 0, DMA_BYTES);
        edu.copyFromDevice(0, READBACK_IOVA, DMA_BYTES);
        byte[] seen = tree.memory.read(host(tree, READBACK_IOVA), DMA_BYTES);
        byte[] uniform = new byte[DMA_BYTES];
        Arrays.fill(uniform, seen[0]);
        assertArrayEquals(uniform, seen, "the device copied one page's worth of the same byte");
        return seen[0];
    }

    /** The guest kernel's DMAR fault line for a blocked access to {@code iova}'s page, new since {@code before}. */
    private static String awaitDmarFault(String before, long iova) throws Exception {
        long deadline = System.nanoTime() + Duration.ofSeconds(20).toNanos();
        String text = "";
        while (System.nanoTime() < deadline) {
            text = dmesg();
            String fresh = text.startsWith(before) ? text.substring(before.length()) : text;
            for (String line : fresh.lines().toList()) {
                Matcher m = DMAR_FAULT.matcher(line);
                if (m.find() && Long.parseUnsignedLong(m.group(1), 16) == (iova & -PAGE)) {
                    return line.trim();
                }
            }
            Thread.sleep(200);
        }
        throw new AssertionError("no DMAR fault for IOVA 0x" + Long.toHexString(iova) + " in the guest's kernel log; "
                + "its DMAR lines: " + text.lines().filter(l -> l.contains("DMAR")).toList());
    }

    private static String dmesg() throws IOException, InterruptedException {
        Process p = new ProcessBuilder("dmesg").redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        p.waitFor();
        return out;
    }

    private static int dmaEntryLimit() throws IOException {
        return Integer.parseInt(Files.readString(DMA_ENTRY_LIMIT).trim());
    }

    private static long lockedKib() {
        return ProcessResources.statusKib("VmLck");
    }

    private static String findEdu(Path sysfs) {
        try (Stream<Path> all = Files.list(sysfs.resolve("bus/pci/devices"))) {
            Optional<String> found = all.filter(d -> hex(d.resolve("vendor")) == EduDevice.VENDOR
                    && hex(d.resolve("device")) == EduDevice.DEVICE).map(d -> d.getFileName().toString()).sorted()
                    .findFirst();
            return found.orElseThrow(() -> new IllegalStateException("no edu device (1234:11e8) in " + sysfs));
        } catch (IOException e) {
            throw new IllegalStateException("cannot list the PCI devices: " + e, e);
        }
    }

    private static int hex(Path file) {
        try {
            return Integer.decode(Files.readString(file).trim());
        } catch (IOException | NumberFormatException e) {
            return -1;
        }
    }
}
