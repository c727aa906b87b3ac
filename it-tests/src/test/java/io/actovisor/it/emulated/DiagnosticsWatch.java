package io.actovisor.it.emulated;

import io.actovisor.it.nested.NestedGuest;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * While the emulated KVM host runs tests, takes its kernel's view ({@link NestedGuest.Running#diagnostics}) when it
 * is worth having before anyone gives up: once when the guest kernel's hung-task detector reports a task blocked
 * ({@value #HUNG_TASK} on the console), and whenever someone asks by creating the file {@value #TRIGGER} in the work
 * directory (the file is removed). Each capture is written to {@code diagnostics-N.log} in the work directory and
 * logged. It also counts the hung-task reports, for the session's {@link HungTaskRule}.
 */
final class DiagnosticsWatch {
    /** What the guest kernel's hung-task detector prints. */
    static final String HUNG_TASK = "blocked for more than";
    /** The file that asks for a capture now. */
    static final String TRIGGER = "diagnose";
    private static final Logger LOG = LoggerFactory.getLogger(DiagnosticsWatch.class);
    private static final Duration EVERY = Duration.ofSeconds(5);
    private static final Duration TIMEOUT = Duration.ofSeconds(90);

    private final Path workDir;
    private long lastCheck = System.nanoTime();
    private boolean hungTaskSeen;
    private int reports;
    private int captures;

    /** A watch over the guest working in {@code workDir}; captures and a trigger left by an earlier run are removed. */
    DiagnosticsWatch(Path workDir) throws IOException {
        this.workDir = workDir;
        Files.deleteIfExists(workDir.resolve(TRIGGER));
        try (var old = Files.newDirectoryStream(workDir, "diagnostics-*.log")) {
            for (Path file : old) {
                Files.delete(file);
            }
        }
    }

    /**
     * Capture if the console newly shows a blocked task or the trigger file exists (at most every few seconds); the
     * number of hung-task reports on the console so far (as of the last look).
     */
    int check(NestedGuest.Running guest) throws IOException {
        if (System.nanoTime() - lastCheck < EVERY.toNanos()) {
            return reports;
        }
        lastCheck = System.nanoTime();
        Path trigger = workDir.resolve(TRIGGER);
        if (Files.deleteIfExists(trigger)) {
            capture(guest, "asked for by " + trigger);
        }
        reports = count(guest.console(), HUNG_TASK);
        if (!hungTaskSeen && reports > 0) {
            hungTaskSeen = true;
            capture(guest, "the guest kernel reports a blocked task");
        }
        return reports;
    }

    /** How often {@code what} occurs in {@code text}. */
    static int count(String text, String what) {
        int n = 0;
        for (int at = text.indexOf(what); at >= 0; at = text.indexOf(what, at + what.length())) {
            n++;
        }
        return n;
    }

    /** Take the guest's view now, write it to the next diagnostics file, log it; the file. */
    Path capture(NestedGuest.Running guest, String why) throws IOException {
        String text = guest.diagnostics(TIMEOUT);
        Path file = workDir.resolve("diagnostics-" + ++captures + ".log");
        Files.writeString(file, why + "\n" + text + "\n");
        LOG.warn("emulated KVM host: diagnostics ({}) in {}:\n{}", why, file, text);
        return file;
    }
}
