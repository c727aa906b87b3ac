package io.actovisor.testkit.scenario;

import io.actovisor.actors.balloon.BalloonSettings;
import io.actovisor.actors.discard.DiscardMode;
import io.actovisor.actors.memory.AddressSpaceActor;
import io.actovisor.testkit.ActorTree;
import io.actovisor.testkit.Invariants;
import java.util.List;
import java.util.Optional;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;

/**
 * A sequence of {@link Step}s on a fresh tree of {@link #MEMORY_PAGES} pages of RAM (region {@code ram} at guest 0),
 * containers {@code c0} and {@code c1} ({@code discard = inhibit}) and {@code c2} ({@code on-demand}), and groups
 * {@code g0}, {@code g1} ({@code inhibit}) and {@code g2} (balloon-compatible: {@code on-demand}). A group attaches
 * only to a container of its own discard mode; other attaches are refused, and the invariants must hold after them
 * too. Printed one numbered step per line.
 */
public record Scenario(List<Step> steps) {
    /** Pages of host memory of the tree. */
    public static final long MEMORY_PAGES = 32;
    /** The containers and groups a scenario's steps name. */
    public static final List<String> CONTAINERS = List.of("c0", "c1", "c2");
    public static final List<String> GROUPS = List.of("g0", "g1", "g2");

    public Scenario {
        steps = List.copyOf(steps);
    }

    /** What went wrong: after which step (from 1) which invariants broke. */
    public record Failure(int step, Step what, List<Invariants.Violation> violations) {
    }

    /**
     * Run the steps on a fresh tree, checking the invariants after each; the first step after which any is
     * violated, or empty if none is.
     */
    public Optional<Failure> run(ActorTestKit kit) {
        try (ActorTree tree = new ActorTree(kit, MEMORY_PAGES, BalloonSettings.DEFAULT)) {
            tree.commit(new AddressSpaceActor.AddRegion(tree.ram("ram", 0, 0, 16)));
            CONTAINERS.forEach(c -> tree.container(c, 65535, c.equals("c2") ? DiscardMode.ON_DEMAND
                    : DiscardMode.INHIBIT));
            GROUPS.forEach(g -> tree.group(g, g.equals("g2")));
            for (int i = 0; i < steps.size(); i++) {
                steps.get(i).apply(tree);
                List<Invariants.Violation> violations = Invariants.check(tree);
                if (!violations.isEmpty()) {
                    return Optional.of(new Failure(i + 1, steps.get(i), violations));
                }
            }
            return Optional.empty();
        }
    }

    @Override
    public String toString() {
        StringBuilder out = new StringBuilder("scenario of " + steps.size() + " steps:");
        for (int i = 0; i < steps.size(); i++) {
            out.append("\n  ").append(i + 1).append(". ").append(steps.get(i));
        }
        return out.toString();
    }
}
