package io.actovisor.it.emulated;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.OptionalLong;
import org.junit.jupiter.api.Test;

/** The session's rule for a guest whose kernel reported a blocked task, on times it is given. */
class HungTaskRuleTest {
    private static final long S = 1_000_000_000L;
    private final HungTaskRule rule = new HungTaskRule(Duration.ofSeconds(240));

    @Test
    void withoutAReportNothingIsHungHoweverQuiet() {
        rule.event(0);
        rule.reports(0, 10_000 * S);
        assertFalse(rule.hung(10_000 * S));
        assertEquals(OptionalLong.empty(), rule.reportedFor(10_000 * S));
    }

    @Test
    void aReportFollowedByTheGraceWithoutEventsIsAHang() {
        rule.event(0);
        rule.reports(1, 300 * S);
        assertFalse(rule.hung(300 * S + 240 * S), "not before the grace has passed");
        rule.reports(2, 420 * S);
        assertTrue(rule.hung(300 * S + 241 * S), "counted from the first report, not the latest");
        assertEquals(OptionalLong.of(241 * S), rule.reportedFor(541 * S));
    }

    @Test
    void anEventAfterTheReportClearsIt() {
        rule.event(0);
        rule.reports(1, 300 * S);
        rule.event(400 * S);
        assertFalse(rule.hung(10_000 * S), "the blocked task went on");
        rule.reports(1, 10_000 * S);
        assertFalse(rule.hung(20_000 * S), "the same old report does not count again");
        rule.reports(2, 20_000 * S);
        assertTrue(rule.hung(20_241 * S), "a new report after the event does");
    }
}
