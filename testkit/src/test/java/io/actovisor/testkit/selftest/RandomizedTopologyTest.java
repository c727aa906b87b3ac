package io.actovisor.testkit.selftest;

import static io.actovisor.testkit.ActorTree.PAGE;
import static org.junit.jupiter.api.Assertions.assertEquals;

import io.actovisor.actors.balloon.BalloonActor;
import io.actovisor.actors.balloon.BalloonSettings;
import io.actovisor.actors.discard.DiscardMode;
import io.actovisor.actors.memory.AddressSpaceActor;
import io.actovisor.actors.vfio.VfioGroupActor;
import io.actovisor.memory.GuestAddress;
import io.actovisor.memory.HostAddress;
import io.actovisor.memory.MemoryRegion;
import io.actovisor.memory.Section;
import io.actovisor.testkit.ActorTree;
import io.actovisor.testkit.ActovisorTest;
import io.actovisor.testkit.fault.Seed;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.SplittableRandom;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.typed.ActorRef;
import org.junit.jupiter.api.Test;

/**
 * Seeded random operation sequences (attach, detach, crash, add and remove regions, inflate, deflate) over the real
 * actor tree and real host memory, with invariants 1, 2 and 3 and the page contents checked after every step. 1,000
 * seeds by default; a failure names its seed ({@code randomized-topology#hex}); replay one with
 * {@code -Dactovisor.seed=<seed>}, run more with {@code -Dactovisor.seeds=N} ({@link Seed#selected}).
 */
@ActovisorTest
class RandomizedTopologyTest {
    private static final String SHAPE = "randomized-topology";
    private static final int PAGES = 24;
    private static final int STEPS = 12;
    private final ActorTestKit kit;

    RandomizedTopologyTest(ActorTestKit kit) {
        this.kit = kit;
    }

    @Test
    void invariantsHoldAfterEveryStepOfEverySequence() {
        Seed.selected(SHAPE, 1000).forEach(this::run);
    }

    private void run(Seed seed) {
        Sequence sequence = new Sequence(seed);
        try {
            sequence.run();
        } catch (AssertionError | RuntimeException e) {
            throw new AssertionError("sequence with seed " + seed + " failed (replay: mvn -pl testkit test "
                    + "-Dtest=RandomizedTopologyTest -Dactovisor.seed=" + seed + "): " + e.getMessage() + ", steps "
                    + sequence.log, e);
        }
    }

    /** One sequence: its own tree, regions and groups. */
    private final class Sequence {
        private final SplittableRandom random;
        private final List<String> log = new ArrayList<>();
        private final Map<String, MemoryRegion> present = new LinkedHashMap<>();
        private final List<MemoryRegion> candidates = new ArrayList<>();
        /** What each host page must read at offset 0: its last written value, or 0 once discarded. */
        private final long[] expected = new long[PAGES];
        private int generation;
        private ActorTree tree;

        Sequence(Seed seed) {
            this.random = seed.random();
        }

        void run() {
            try (ActorTree t = new ActorTree(kit, PAGES, BalloonSettings.DEFAULT)) {
                tree = t;
                tree.container("c0", 65535);
                tree.container("small", 2);
                tree.container("od", 65535, DiscardMode.ON_DEMAND);
                for (int g = 0; g < 4; g++) {
                    tree.group("g" + g, g == 3);
                }
                // Candidate regions over distinct host pages; some overlap in guest space, resolved by priority.
                candidates.add(tree.ram("r0", 0, 0, 8));
                candidates.add(tree.ram("r1", 8, 8, 4));
                candidates.add(tree.ram("r2", 32, 12, 6).withPriority(1));
                candidates.add(tree.ram("r3", 34, 18, 6));
                for (int page = 0; page < PAGES; page++) {
                    write(page);
                }
                for (int step = 0; step < STEPS; step++) {
                    step(step);
                    String when = "after step " + step + " " + log;
                    tree.assertInvariants(when);
                    checkContents(when);
                }
            }
        }

        private void write(int hostPage) {
            long value = ((long) hostPage << 32) | ++generation;
            tree.memory.writeLong(tree.memory.base().checkedAdd(hostPage * PAGE), value);
            expected[hostPage] = value;
        }

        private void step(int step) {
            List<String> groups = new ArrayList<>(tree.groups.keySet());
            String group = groups.get(random.nextInt(groups.size()));
            switch (random.nextInt(7)) {
                case 0, 1 -> {
                    // A group attaching to a container of another discard mode is refused (and stays detached).
                    String container = switch (random.nextInt(6)) {
                        case 0 -> "small";
                        case 1 -> "od";
                        default -> tree.compatible.get(group) ? "od" : "c0";
                    };
                    log.add("attach " + group + " to " + container);
                    tree.attach(group, container);
                }
                case 2 -> {
                    log.add("detach " + group);
                    tree.detach(group);
                }
                case 3 -> crash(group);
                case 4 -> toggleRegion();
                case 5 -> inflate();
                default -> {
                    long[] frames = randomFrames();
                    log.add("deflate " + java.util.Arrays.toString(frames));
                    tree.deflate(frames);
                }
            }
        }

        private void crash(String group) {
            log.add("crash " + group);
            ActorRef<VfioGroupActor.Command> ref = tree.groups.get(group);
            boolean compatible = tree.compatible.get(group);
            // The tree crashes the group at its next message and forgets it.
            tree.crashAt(group, 1);
            ref.tell(new VfioGroupActor.GetState(kit.createTestProbe(VfioGroupActor.State.class).ref()));
            kit.createTestProbe().expectTerminated(ref, Duration.ofSeconds(5));
            // Its container drops it and the discard manager its registration once their watches fire.
            tree.eventually(() -> tree.assertInvariants("after the crash of " + group));
            tree.group(group, compatible);
        }

        private void toggleRegion() {
            MemoryRegion region = candidates.get(random.nextInt(candidates.size()));
            AddressSpaceActor.RegionChange change = present.containsKey(region.name())
                    ? new AddressSpaceActor.RemoveRegion(region.name()) : new AddressSpaceActor.AddRegion(region);
            log.add((change instanceof AddressSpaceActor.AddRegion ? "add " : "remove ") + region.name());
            AddressSpaceActor.CommitResult result = tree.commit(change);
            if (result instanceof AddressSpaceActor.Committed) {
                if (present.remove(region.name()) == null) {
                    present.put(region.name(), region);
                }
            } else {
                log.add("(refused: " + ((AddressSpaceActor.CommitFailed) result).reason() + ")");
            }
        }

        private long[] randomFrames() {
            long[] frames = new long[1 + random.nextInt(4)];
            for (int i = 0; i < frames.length; i++) {
                frames[i] = random.nextInt(44);
            }
            return frames;
        }

        private void inflate() {
            long[] frames = randomFrames();
            boolean inhibited = tree.groups.keySet().stream().filter(g -> !tree.compatible.get(g))
                    .anyMatch(g -> tree.groupState(g).container().isPresent());
            List<Section> sections = tree.view().flatView().sections();
            BalloonActor.BalloonStatus before = tree.balloonStatus();
            BalloonActor.InflateResult result = tree.inflate(frames);
            log.add("inflate " + java.util.Arrays.toString(frames) + " -> " + result);
            if (inhibited) {
                assertEquals(0, result.pagesDiscarded(), "no discard while inhibited");
            } else {
                assertEquals(result.pagesAccepted(), result.pagesDiscarded(), "every new frame discarded");
            }
            long actualPages = tree.balloonStatus().actualBytes() / PAGE;
            assertEquals(before.actualBytes() / PAGE + result.pagesAccepted(), actualPages);
            if (result.pagesDiscarded() > 0) {
                for (Long frame : acceptedFrames(frames, result)) {
                    Optional<HostAddress> host = sections.stream().filter(s -> s.range().contains(frame * PAGE))
                            .findFirst().map(s -> s.hostAddress(new GuestAddress(frame * PAGE)));
                    int hostPage = (int) ((host.orElseThrow().value() - tree.memory.base().value()) / PAGE);
                    expected[hostPage] = 0;
                }
            }
        }

        private List<Long> acceptedFrames(long[] frames, BalloonActor.InflateResult result) {
            // The tree reports which frames were already inflated only through counts; the discards the PinWatch
            // saw are the authority on which host pages were really discarded.
            List<Long> accepted = new ArrayList<>();
            List<io.actovisor.memory.AddressRange> discards = tree.pins.discards();
            for (long frame : frames) {
                if (result.rejected().contains(frame) || accepted.contains(frame)) {
                    continue;
                }
                accepted.add(frame);
            }
            accepted.removeIf(frame -> discards.stream().noneMatch(d -> {
                List<Section> s = tree.view().flatView().sections();
                return s.stream().filter(x -> x.range().contains(frame * PAGE)).findFirst()
                        .map(x -> d.contains(x.hostAddress(new GuestAddress(frame * PAGE)).value())).orElse(false);
            }));
            return accepted;
        }

        private void checkContents(String when) {
            for (int page = 0; page < PAGES; page++) {
                long value = tree.memory.readLong(tree.memory.base().checkedAdd(page * PAGE));
                assertEquals(expected[page], value, "host page " + page + " contents " + when);
                if (value == 0) {
                    write(page); // the guest touches the page again: it now holds data worth keeping
                }
            }
        }
    }
}
