package io.actovisor.testkit.scenario;

import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.Combinators;

/**
 * jqwik arbitraries for {@link Scenario}s: attach and detach of the scenario's groups, inflate and deflate of frames
 * of its RAM, and commits that add or remove a second RAM region. jqwik shrinks a failing scenario to fewer steps and
 * smaller frame lists, and prints it one readable step per line.
 */
public final class Scenarios {
    private Scenarios() {
    }

    /** Scenarios of 1 to {@code maxSteps} steps. */
    public static Arbitrary<Scenario> scenarios(int maxSteps) {
        return steps().list().ofMinSize(1).ofMaxSize(maxSteps).map(Scenario::new);
    }

    /** One step of any kind. */
    public static Arbitrary<Step> steps() {
        Arbitrary<String> group = Arbitraries.of(Scenario.GROUPS);
        Arbitrary<String> container = Arbitraries.of(Scenario.CONTAINERS);
        Arbitrary<long[]> frames = Arbitraries.longs().between(0, 15).array(long[].class).ofMinSize(1).ofMaxSize(4);
        return Arbitraries.frequencyOf(
                net.jqwik.api.Tuple.of(3, Combinators.combine(group, container).as(Step.Attach::new)),
                net.jqwik.api.Tuple.of(2, group.map(Step.Detach::new)),
                net.jqwik.api.Tuple.of(2, frames.map(Step.Inflate::new)),
                net.jqwik.api.Tuple.of(1, frames.map(Step.Deflate::new)),
                net.jqwik.api.Tuple.of(1, Arbitraries.just(new Step.AddRegion("high", 64, 16, 8))),
                net.jqwik.api.Tuple.of(1, Arbitraries.just(new Step.RemoveRegion("high"))));
    }
}
