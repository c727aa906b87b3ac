package io.actovisor.it.emulated;

import java.time.Duration;
import java.util.OptionalLong;

/**
 * When a guest whose kernel's hung-task detector has spoken counts as hung: a report ({@link DiagnosticsWatch#HUNG_TASK}
 * on the console: a task in uninterruptible sleep for over {@code hung_task_timeout_secs}, 120 s on the Debian kernel)
 * that arrived after the guest's last test event, followed by {@code grace} without any event. An event clears it
 * (a task that was blocked for a while and then went on is not a hang), so the general quiet limit of the session
 * applies again until the next report. Pure bookkeeping over the times the session passes in ({@link System#nanoTime}).
 */
final class HungTaskRule {
    private final long graceNanos;
    /** Reports seen so far, and how many there were at the last event. */
    private int reports;
    private int reportsAtLastEvent;
    /** When the first report after the last event was seen. */
    private OptionalLong reportedAt = OptionalLong.empty();

    HungTaskRule(Duration grace) {
        this.graceNanos = grace.toNanos();
    }

    /** The guest reported a test event at {@code now}. */
    void event(long now) {
        reportsAtLastEvent = reports;
        reportedAt = OptionalLong.empty();
    }

    /** The console now holds {@code count} hung-task reports in all (seen at {@code now}). */
    void reports(int count, long now) {
        if (count > reports) {
            reports = count;
            if (reportedAt.isEmpty() && reports > reportsAtLastEvent) {
                reportedAt = OptionalLong.of(now);
            }
        }
    }

    /** Whether a task blocked since the last event and nothing happened for the grace time since its report. */
    boolean hung(long now) {
        return reportedAt.isPresent() && now - reportedAt.getAsLong() > graceNanos;
    }

    /** How long ago the first report since the last event was seen, if there is one. */
    OptionalLong reportedFor(long now) {
        return reportedAt.isPresent() ? OptionalLong.of(now - reportedAt.getAsLong()) : OptionalLong.empty();
    }
}
