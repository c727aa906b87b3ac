package io.actovisor.memory.testing;

import java.time.Duration;
import org.junit.platform.launcher.LauncherSession;
import org.junit.platform.launcher.LauncherSessionListener;

/**
 * Opens every test JVM that has this test jar: derives Pekko's test waits from the one {@link TestTimeouts} factor
 * (unless set explicitly), and, in the first module of the build (system property {@value #TABLE_PROPERTY} set by
 * the root pom for {@code actovisor-memory}), prints the {@link FacilityTable}. Registered in
 * {@code META-INF/services/org.junit.platform.launcher.LauncherSessionListener}.
 */
public final class FacilitySession implements LauncherSessionListener {
    /** The module whose test run prints the table. */
    public static final String TABLE_PROPERTY = "actovisor.test.module";
    private static final String TABLE_MODULE = "actovisor-memory";
    /** Pekko's own default for {@code pekko.logger-startup-timeout}. */
    private static final Duration LOGGER_STARTUP = Duration.ofSeconds(5);

    @Override
    public void launcherSessionOpened(LauncherSession session) {
        applyTimeoutFactor();
        if (TABLE_MODULE.equals(System.getProperty(TABLE_PROPERTY))) {
            // Test output, not library logging: the table is for the person reading the build log.
            System.out.print(FacilityTable.render(FacilityTable.probe()));
            System.out.flush();
        }
    }

    /** Set Pekko's test-kit time factor and logger start-up timeout from {@link TestTimeouts#factor()}. */
    public static void applyTimeoutFactor() {
        double factor = TestTimeouts.factor();
        System.getProperties().putIfAbsent("pekko.actor.testkit.typed.timefactor", String.valueOf(factor));
        System.getProperties().putIfAbsent("pekko.logger-startup-timeout",
                TestTimeouts.scaled(LOGGER_STARTUP).toMillis() + "ms");
    }
}
