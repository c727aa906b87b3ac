package io.actovisor.vmm;

import java.io.IOException;
import java.io.InputStream;
import java.util.Properties;

/** What the build recorded about itself: the version the CLI, the REST API and the metrics report. */
public final class BuildInfo {
    private BuildInfo() {
    }

    /** The version of this build, from the filtered {@code build-info.properties}; "unknown" without it. */
    public static String version() {
        Properties p = new Properties();
        try (InputStream in = BuildInfo.class.getResourceAsStream("/io/actovisor/vmm/build-info.properties")) {
            if (in != null) {
                p.load(in);
            }
        } catch (IOException e) {
            return "unknown";
        }
        return p.getProperty("version", "unknown");
    }
}
