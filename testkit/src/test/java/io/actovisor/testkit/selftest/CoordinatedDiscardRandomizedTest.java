package io.actovisor.testkit.selftest;

import static io.actovisor.testkit.ActorTree.PAGE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.actors.balloon.BalloonActor;
import io.actovisor.actors.balloon.BalloonSettings;
import io.actovisor.actors.discard.DiscardManager;
import io.actovisor.actors.discard.DiscardMode;
import io.actovisor.actors.memory.AddressSpaceActor;
import io.actovisor.actors.vfio.ContainerDmaActor;
import io.actovisor.actors.vfio.VfioContainerActor;
import io.actovisor.actors.vfio.VfioGroupActor;
import io.actovisor.devices.coherence.CpuView;
import io.actovisor.devices.iommu.DmaMapping;
import io.actovisor.devices.iommu.pinned.PinnedIommu;
import io.actovisor.kernel.uring.IoUring;
import io.actovisor.memory.sys.ProcessResources;
import io.actovisor.testkit.ActorTree;
import io.actovisor.testkit.ActovisorTest;
import io.actovisor.testkit.NativeRequirement;
import io.actovisor.testkit.fault.Seed;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.SplittableRandom;
import java.util.TreeSet;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.junit.jupiter.api.Test;

/**
 * Seeded random sequences of inflate, deflate, device DMA, attach and detach in both modes, and crashes of groups and
 * containers in the middle of a coordination, over the real actor tree. Every fourth sequence runs its first
 * coordinated container on {@code pinned} (real pins, device DMA through them), where the coherence audit compares
 * what the device and the CPU read on every mapped page, the blocks mapped again after a deflate included. After every
 * step: 0 incoherent pages, no discard ever touched a page still mapped in any container (invariant 1), exact holder
 * counts (2), containers mirror the view in blocks (3); after every sequence nothing is left pinned. The control runs
 * the same generator with coordination switched off and must find incoherent pages.
 *
 * <p>{@code mvn verify} runs 100 sequences; {@code -Dactovisor.seeds=1000} runs 1,000; {@code -Dactovisor.seed=<seed>}
 * replays one ({@code coordinated-discard#hex}, as a failure prints it).
 */
@ActovisorTest
class CoordinatedDiscardRandomizedTest {
    private static final String SHAPE = "coordinated-discard";
    private static final int PAGES = 32;
    private static final long BLOCK = 4 * PAGE;
    private static final int BLOCKS = (int) (PAGES * PAGE / BLOCK);
    private static final int STEPS = 10;
    private final ActorTestKit kit;

    CoordinatedDiscardRandomizedTest(ActorTestKit kit) {
        this.kit = kit;
    }

    @Test
    void everyMappedPageIsCoherentAndNoDiscardRunsOnAMappedBlock() {
        boolean uring = IoUring.unavailabilityCause().isEmpty();
        NativeRequirement.optional("io_uring (the pinned sequences)", IoUring.unavailabilityCause());
        List<Seed> seeds = Seed.selected(SHAPE, 100);
        long audited = 0;
        long discardedBytes = 0;
        long remappedAudited = 0;
        int pinnedRuns = 0;
        for (Seed seed : seeds) {
            boolean pinned = uring && seed.value() % 4 == 0;
            Sequence sequence = new Sequence(seed, pinned, true);
            try {
                sequence.run();
            } catch (AssertionError | RuntimeException e) {
                throw new AssertionError("sequence " + seed + " failed (replay: mvn -pl testkit test "
                        + "-Dtest=CoordinatedDiscardRandomizedTest -Dactovisor.seed=" + seed + "): " + e.getMessage()
                        + "\n" + String.join("\n", sequence.log), e);
            }
            assertEquals(0, sequence.incoherent, "incoherent pages in sequence " + seed);
            audited += sequence.audited;
            discardedBytes += sequence.discardedBytes;
            remappedAudited += sequence.remappedAudited;
            pinnedRuns += pinned ? 1 : 0;
        }
        System.out.printf("coordinated discard: %d sequences (%d on pinned), %d bytes discarded, %d pages audited "
                + "(%d of them in blocks mapped again after a deflate), 0 incoherent%n", seeds.size(), pinnedRuns,
                discardedBytes, audited, remappedAudited);
        if (seeds.size() >= 10) {
            assertTrue(discardedBytes > 0, "the generator discards blocks");
        }
        if (uring && seeds.size() >= 10) {
            assertTrue(pinnedRuns > 0 && audited > 0 && remappedAudited > 0, "pinned sequences audited pages, "
                    + "blocks mapped again after a deflate among them");
        }
    }

    /** The control: with coordination off (unsafe discards under pin), the same generator must find stale pages. */
    @Test
    void withoutCoordinationTheAuditFindsIncoherentPages() {
        NativeRequirement.require("io_uring", IoUring.unavailabilityCause());
        long incoherent = 0;
        for (long seed = 1; seed <= 20; seed++) {
            Sequence sequence = new Sequence(new Seed(SHAPE, seed * 10), true, false);
            sequence.run();
            incoherent += sequence.incoherent;
        }
        System.out.printf("control without coordination: %d incoherent pages in 20 pinned sequences%n", incoherent);
        assertTrue(incoherent > 0, "the audit can fail: " + incoherent + " incoherent pages without coordination");
    }

    /** What the audit saw: the mappings it read and its report. */
    /** One sequence: its own tree, containers and groups. */
    private final class Sequence {
        private final SplittableRandom random;
        private final boolean pinned;
        private final boolean coordinated;
        private final List<String> log = new ArrayList<>();
        private final TreeSet<Long> inflated = new TreeSet<>();
        private final Map<String, DiscardMode> modes = Map.of("g0", DiscardMode.COORDINATED, "g1",
                DiscardMode.COORDINATED, "g2", DiscardMode.INHIBIT);
        private ActorTree tree;
        private long incoherent;
        private long audited;
        private long discardedBytes;
        private long remappedAudited;
        /** Pages of blocks the pinned container mapped again after a deflate (the audit must cover them). */
        private final TreeSet<Long> remappedPages = new TreeSet<>();
        private int generation;

        Sequence(Seed seed, boolean pinned, boolean coordinated) {
            this.random = seed.random();
            this.pinned = pinned;
            this.coordinated = coordinated;
        }

        void run() {
            long pinnedBefore = ProcessResources.statusKib("VmPin");
            BalloonSettings settings = BalloonSettings.DEFAULT.withUnsafeIgnoreInhibitor(!coordinated);
            try (ActorTree t = new ActorTree(kit, PAGES, settings, BLOCK)) {
                tree = t;
                spawnContainer("co");
                spawnContainer("co2");
                spawnContainer("inh");
                modes.forEach((name, mode) -> tree.group(name, mode));
                tree.commit(new AddressSpaceActor.AddRegion(tree.ram("ram", 0, 0, PAGES)));
                tree.discard.tell(new DiscardManager.SetGuestContract(coordinated));
                for (int page = 0; page < PAGES; page++) {
                    write(page);
                }
                log.add("attach g0 to co -> " + tree.attach("g0", "co"));
                for (int step = 0; step < STEPS; step++) {
                    step();
                    String when = "after step " + step;
                    if (coordinated) {
                        tree.eventually(() -> tree.assertInvariants(when));
                    }
                    touchReturnedPages();
                    audit();
                }
                if (coordinated) {
                    tree.assertInvariants("at the end");
                }
                discardedBytes = tree.discardState().bytesDiscarded();
            }
            if (coordinated) {
                assertEquals(0, tree.pins.pinnedBytes(), "nothing left pinned");
            }
            if (pinned) {
                assertEquals(pinnedBefore, ProcessResources.statusKib("VmPin"), "VmPin back where it started");
            }
        }

        private void spawnContainer(String name) {
            DiscardMode mode = name.equals("inh") ? DiscardMode.INHIBIT : DiscardMode.COORDINATED;
            if (pinned && name.equals("co")) {
                tree.container(name, tree.pins.backend(PinnedIommu.BACKEND, PinnedIommu::open), mode);
            } else {
                tree.container(name, 65535, mode);
            }
        }

        private void step() {
            List<String> groups = new ArrayList<>(tree.groups.keySet());
            String group = groups.get(random.nextInt(groups.size()));
            switch (random.nextInt(9)) {
                case 0, 1 -> {
                    String container = random.nextInt(8) == 0 ? "inh"
                            : modes.get(group) == DiscardMode.INHIBIT ? "inh" : random.nextInt(3) > 0 ? "co" : "co2";
                    log.add("attach " + group + " to " + container + " -> " + tree.attach(group, container));
                }
                case 2 -> log.add("detach " + group + " -> " + tree.detach(group));
                case 3, 4 -> inflate();
                case 5 -> deflate();
                case 6 -> dma();
                case 7 -> {
                    log.add("crash " + group);
                    tree.stopGroup(group);
                    tree.group(group, modes.get(group));
                }
                default -> crashContainerMidCoordination();
            }
        }

        private long[] blockFrames(int block, boolean whole) {
            List<Long> frames = new ArrayList<>();
            for (int f = 0; f < BLOCK / PAGE; f++) {
                if (whole || random.nextBoolean()) {
                    frames.add(block * BLOCK / PAGE + f);
                }
            }
            return frames.stream().mapToLong(Long::longValue).toArray();
        }

        private void inflate() {
            long[] frames = blockFrames(random.nextInt(BLOCKS), random.nextInt(3) > 0);
            BalloonActor.InflateResult result = tree.inflate(frames);
            log.add("inflate " + java.util.Arrays.toString(frames) + " -> " + result);
            for (long f : frames) {
                inflated.add(f);
            }
        }

        private void deflate() {
            if (inflated.isEmpty()) {
                return;
            }
            List<io.actovisor.memory.AddressRange> releasedBefore = pinned && tree.containers.containsKey("co")
                    ? tree.containerState("co").releasedBlocks() : List.of();
            List<Long> candidates = new ArrayList<>(inflated);
            if (!releasedBefore.isEmpty() && random.nextBoolean()) {
                // Half the time, take pages back from a block the pinned container released: the remap path.
                io.actovisor.memory.AddressRange block = releasedBefore.get(random.nextInt(releasedBefore.size()));
                candidates.removeIf(f -> !block.contains(f * PAGE));
                if (candidates.isEmpty()) {
                    candidates = new ArrayList<>(inflated);
                }
            }
            long[] frames = new long[1 + random.nextInt(Math.min(4, candidates.size()))];
            for (int i = 0; i < frames.length; i++) {
                frames[i] = candidates.get(random.nextInt(candidates.size()));
            }
            BalloonActor.DeflateResult result = tree.deflate(frames);
            log.add("deflate " + java.util.Arrays.toString(frames) + " -> " + result + " (released before: "
                    + releasedBefore + ")");
            if (!releasedBefore.isEmpty()) {
                List<io.actovisor.memory.AddressRange> releasedAfter = tree.containerState("co").releasedBlocks();
                releasedBefore.stream().filter(b -> !releasedAfter.contains(b)).forEach(b -> {
                    for (long p = b.base() / PAGE; p < (b.base() + b.size()) / PAGE; p++) {
                        remappedPages.add(p);
                    }
                });
            }
            for (long f : frames) {
                if (!result.notInflated().contains(f)) {
                    inflated.remove(f);
                }
            }
        }

        /** The device writes a page the guest owns (not in the balloon); the CPU must read what it wrote. */
        private void dma() {
            if (!pinned) {
                return;
            }
            long page = random.nextInt(PAGES);
            if (inflated.contains(page)) {
                return;
            }
            byte[] data = new byte[8];
            java.util.Arrays.fill(data, (byte) (1 + random.nextInt(200)));
            ContainerDmaActor.WriteResult result = tree.ask(ContainerDmaActor.WriteResult.class,
                    r -> new VfioContainerActor.Dma(new ContainerDmaActor.DmaWrite(page * PAGE, data, r)),
                    tree.containers.get("co"));
            log.add("dma write page " + page + " -> " + result.getClass().getSimpleName());
            if (result instanceof ContainerDmaActor.DataWritten && coordinated) {
                assertEquals(java.util.Arrays.toString(data), java.util.Arrays.toString(tree.memory.read(
                        tree.memory.base().checkedAdd(page * PAGE), 8)), "the CPU reads what the device wrote");
            }
        }

        /** Inflate a whole block and stop a coordinated container while the manager coordinates it. */
        private void crashContainerMidCoordination() {
            String victim = random.nextInt(4) == 0 ? "co" : "co2";
            long[] frames = blockFrames(random.nextInt(BLOCKS), true);
            var probe = kit.createTestProbe(BalloonActor.InflateResult.class);
            tree.balloon.tell(new BalloonActor.Inflate(frames, probe.ref()));
            tree.stopContainer(victim);
            BalloonActor.InflateResult result = probe.expectMessageClass(BalloonActor.InflateResult.class,
                    Duration.ofSeconds(15));
            log.add("inflate " + java.util.Arrays.toString(frames) + " while " + victim + " crashes -> " + result);
            for (long f : frames) {
                inflated.add(f);
            }
            // Its groups see it stop and release their registrations; then it comes back, empty.
            tree.eventually(() -> {
                for (String g : tree.groups.keySet()) {
                    VfioGroupActor.State state = tree.groupState(g);
                    assertTrue(state.container().map(c -> !c.equals(victim)).orElse(true), g + " left " + victim);
                }
            });
            spawnContainer(victim);
        }

        /** The guest writes the pages it owns that read zero (discarded and taken back): they hold data again. */
        private void touchReturnedPages() {
            for (int page = 0; page < PAGES; page++) {
                if (!inflated.contains((long) page)
                        && tree.memory.readLong(tree.memory.base().checkedAdd(page * PAGE)) == 0) {
                    write(page);
                }
            }
        }

        private void write(int page) {
            tree.memory.writeLong(tree.memory.base().checkedAdd(page * PAGE), ((long) page << 32) | ++generation);
        }

        /** Device and CPU read every page the pinned container maps; count what differs. */
        private void audit() {
            if (!pinned || !tree.containers.containsKey("co")) {
                return;
            }
            ContainerDmaActor.AuditResult result = tree.ask(ContainerDmaActor.AuditResult.class,
                    r -> new VfioContainerActor.Dma(new ContainerDmaActor.Audit(CpuView.of(List.of(tree.memory)),
                            Optional.empty(), Optional.empty(), r)), tree.containers.get("co"));
            if (result instanceof ContainerDmaActor.Audited audit) {
                audited += audit.report().pagesChecked();
                incoherent += audit.report().incoherent().size();
                for (DmaMapping m : audit.mappings()) {
                    for (long p = m.iova().base() / PAGE; p < (m.iova().base() + m.iova().size()) / PAGE; p++) {
                        if (remappedPages.remove(p)) {
                            remappedAudited++;
                        }
                    }
                }
                if (!audit.report().incoherent().isEmpty()) {
                    log.add("audit: " + audit.report().incoherent().size() + " incoherent pages "
                            + audit.report().incoherent());
                }
            }
        }
    }
}
