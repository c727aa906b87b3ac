package io.actovisor.testkit.scenario;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.actovisor.memory.sys.Posix;
import io.actovisor.testkit.NativeRequirement;
import java.util.List;
import java.util.Optional;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.Example;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import net.jqwik.api.lifecycle.AfterContainer;
import net.jqwik.api.lifecycle.BeforeContainer;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;

/**
 * Random topology scenarios (attach, detach, inflate, deflate, region commits) keep invariants 1, 2, 3 and 6 after
 * every step; a failure shrinks to the fewest steps and prints them as sentences.
 */
class ScenarioPropertiesTest {
    private static ActorTestKit kit;

    @BeforeContainer
    static void start() {
        NativeRequirement.require("host memory (mmap, madvise)", Posix.unavailabilityCause());
        kit = ActorTestKit.create("scenario-properties");
    }

    @AfterContainer
    static void stop() {
        if (kit != null) {
            kit.shutdownTestKit();
        }
    }

    @Property(tries = 12)
    void invariantsHoldAfterEveryStep(@ForAll("scenarios") Scenario scenario) {
        assertEquals(Optional.empty(), scenario.run(kit), scenario::toString);
    }

    @Provide
    Arbitrary<Scenario> scenarios() {
        return Scenarios.scenarios(8);
    }

    @Example
    void aScenarioPrintsAsNumberedSentences() {
        Scenario scenario = new Scenario(List.of(new Step.Attach("g0", "c0"), new Step.Inflate(new long[] {3, 4}),
                new Step.AddRegion("high", 64, 16, 8), new Step.Detach("g0")));
        assertEquals("""
                scenario of 4 steps:
                  1. attach g0 to c0
                  2. inflate frames [3, 4]
                  3. add RAM region high of 8 pages at guest page 64
                  4. detach g0""", scenario.toString());
    }

    @Example
    void theExampleScenarioKeepsTheInvariants() {
        Scenario scenario = new Scenario(List.of(new Step.Attach("g0", "c0"), new Step.Inflate(new long[] {3, 4}),
                new Step.AddRegion("high", 64, 16, 8), new Step.Attach("g2", "c2"), new Step.Detach("g0"),
                new Step.Inflate(new long[] {5}), new Step.RemoveRegion("high")));
        assertEquals(Optional.empty(), scenario.run(kit));
    }
}
