package io.actovisor.it.emulated;

import static org.junit.platform.engine.discovery.DiscoverySelectors.selectUniqueId;

import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import org.junit.platform.launcher.EngineFilter;
import org.junit.platform.launcher.LauncherDiscoveryRequest;
import org.junit.platform.launcher.core.LauncherDiscoveryRequestBuilder;
import org.junit.platform.launcher.core.LauncherFactory;

/**
 * The guest half of the emulated KVM host: run inside the guest JVM, it runs the given Jupiter unique ids (whole
 * classes or single tests) through the
 * JUnit Platform launcher (Jupiter only) and writes every execution event as one JSON line ({@link GuestEvents}) to
 * its standard output, which the guest's init connects to the second serial port. Anything the tests themselves
 * print goes to standard error, i.e. the guest console.
 */
public final class GuestTestRunner {
    private GuestTestRunner() {
    }

    public static void main(String[] args) {
        PrintStream events = new PrintStream(new FileOutputStream(FileDescriptor.out), true, StandardCharsets.UTF_8);
        System.setOut(System.err);
        GuestEvents.Writer writer = new GuestEvents.Writer(events);
        Map<String, Object> started = new LinkedHashMap<>();
        started.put("event", GuestEvents.RUNNER_STARTED);
        started.put("kvm", Files.exists(Path.of("/dev/kvm")));
        started.put("selected", Arrays.asList(args));
        writer.write(started);
        int status = 0;
        try {
            LauncherDiscoveryRequest request = LauncherDiscoveryRequestBuilder.request()
                    .selectors(Arrays.stream(args).map(id -> selectUniqueId(id)).toList())
                    .filters(EngineFilter.includeEngines("junit-jupiter")).build();
            LauncherFactory.create().execute(request, new GuestEvents.Listener(writer));
        } catch (Throwable t) {
            writer.write(Map.of("event", GuestEvents.RUNNER_FAILED, "error", GuestEvents.describe(t)));
            status = 1;
        }
        writer.write(Map.of("event", GuestEvents.DONE));
        events.flush();
        // Actor systems or VMM children a test left behind must not keep the guest up.
        System.exit(status);
    }
}
