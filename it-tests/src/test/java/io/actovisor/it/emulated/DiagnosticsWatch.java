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
 * logged.
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

    /** Capture if the console newly shows a blocked task or the trigger file exists (at most every few seconds). */
    void check(NestedGuest.Running guest) throws IOException {
        if (System.nanoTime() - lastCheck < EVERY.toNanos()) {
            return;
        }
        lastCheck = System.nanoTime();
        Path trigger = workDir.resolve(TRIGGER);
        if (Files.deleteIfExists(trigger)) {
            capture(guest, "asked for by " + trigger);
        }
        if (!hungTaskSeen && guest.console().contains(HUNG_TASK)) {
            hungTaskSeen = true;
            capture(guest, "the guest kernel reports a blocked task");
        }
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
