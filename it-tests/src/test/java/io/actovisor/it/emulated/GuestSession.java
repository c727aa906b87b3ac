package io.actovisor.it.emulated;

import com.fasterxml.jackson.databind.JsonNode;
import io.actovisor.it.nested.NestedGuest;
import io.actovisor.memory.testing.GuestImages;
import io.actovisor.memory.testing.KvmHost;
import io.actovisor.memory.testing.NativeRequirement;
import io.actovisor.memory.testing.TestTimeouts;
import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import org.junit.platform.engine.EngineExecutionListener;
import org.junit.platform.engine.TestDescriptor;
import org.junit.platform.engine.TestExecutionResult;
import org.junit.platform.engine.UniqueId;
import org.junit.platform.engine.support.descriptor.ClassSource;
import org.opentest4j.TestAbortedException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One boot of the emulated KVM host for a set of test classes: builds the guest JVM's command (the host's
 * JDK and class path over 9p, the JNA and temp directories on the guest's tmpfs, the timeout factor, all in
 * {@code JAVA_TOOL_OPTIONS} so that child JVMs a test starts get them too), boots a
 * {@link NestedGuest.Kind#KVM_HOST} guest, and replays the events its {@link GuestTestRunner} streams back to the
 * host's listener as they arrive. A guest that fails to boot, load its modules or start its JVM, or that hangs or
 * dies in a test, is killed; every test it did not finish is reported failed with the stage and the console, and a
 * hung guest's report also carries its kernel's view ({@link NestedGuest.Running#diagnosedFailure}). While the tests
 * run, a {@link DiagnosticsWatch} captures that view when the guest kernel reports a blocked task or on demand; a
 * guest that stays silent for {@link #HUNG_TASK_GRACE} after such a report is killed as hung ({@link HungTaskRule}),
 * long before the general {@link #QUIET} limit.
 */
final class GuestSession {
    /** Set ({@code true}) in the emulated host's test JVM: its KVM guests run under QEMU TCG. */
    static final String EMULATED_HOST_PROPERTY = "actovisor.kvm.emulated-host";
    private static final Logger LOG = LoggerFactory.getLogger(GuestSession.class);
    /** The timeout factor inside the emulated host (TCG is roughly ten times slower than the host). */
    static final double EMULATED_FACTOR = 10;
    private static final Duration BOOT = Duration.ofSeconds(240);
    private static final Duration JVM_START = Duration.ofSeconds(300);
    /** The longest a guest may go without reporting an event before it counts as hung. */
    private static final Duration QUIET = Duration.ofMinutes(25);
    /**
     * How long a guest whose kernel reported a task blocked (in uninterruptible sleep for over 120 s) since its last
     * event may stay silent before it counts as hung ({@link HungTaskRule}): a hang in the kernel fails within
     * minutes instead of {@link #QUIET}.
     */
    private static final Duration HUNG_TASK_GRACE = Duration.ofMinutes(4);
    private static final UniqueId JUPITER = UniqueId.forEngine("junit-jupiter");

    private final UniqueId engine;
    private final List<TestDescriptor> classes;
    private final EngineExecutionListener listener;
    private final Map<UniqueId, TestDescriptor> byId = new HashMap<>();
    private final Deque<TestDescriptor> open = new ArrayDeque<>();
    private final Set<UniqueId> done = new HashSet<>();

    private final Map<UniqueId, Long> startTimes = new HashMap<>();

    GuestSession(UniqueId engine, List<TestDescriptor> classes, EngineExecutionListener listener) {
        this.engine = engine;
        this.classes = classes;
        this.listener = listener;
        classes.forEach(this::index);
    }

    private void index(TestDescriptor d) {
        byId.put(d.getUniqueId(), d);
        d.getChildren().forEach(this::index);
    }

    void run() {
        Optional<String> cause = unavailability();
        if (cause.isPresent()) {
            notRun(cause.get());
            return;
        }
        GuestImages.Facilities images = GuestImages.probe();
        Path work = Path.of("target", "emulated-kvm").toAbsolutePath();
        long start = System.nanoTime();
        if (classes.stream().anyMatch(c -> hasTag(c, LinuxBootRoute.TAG))) {
            LinuxBootRoute.prepare(cacheHome(work)).ifPresent(why -> LOG.warn(
                    "emulated KVM host: the Linux guest's kernel and initramfs are not prepared: {}", why));
        }
        try (NestedGuest.Running guest = NestedGuest.start(NestedGuest.Kind.KVM_HOST, images, work, command())) {
            try {
                Duration boot = guest.awaitBoot(TestTimeouts.scaled(BOOT));
                LOG.info("emulated KVM host: booted in {} s", boot.toSeconds());
                follow(guest);
            } catch (NestedGuest.GuestFailure failure) {
                abandon(failure);
            }
        } catch (IOException e) {
            abandon(new IllegalStateException("the emulated KVM host could not run: " + e, e));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            abandon(new IllegalStateException("interrupted while the emulated KVM host ran its tests", e));
        }
        LOG.info("emulated KVM host: {} s in all", seconds(start));
    }

    /** Why these tests cannot run in the emulated host here, with what to install. */
    private static Optional<String> unavailability() {
        if (KvmHost.choice() == KvmHost.Choice.NONE) {
            return KvmHost.unavailabilityCause(Optional.empty());
        }
        return GuestImages.probe().unavailabilityCause().map(cause -> (KvmHost.choice() == KvmHost.Choice.EMULATED
                ? "the emulated KVM host (forced by " + KvmHost.PROPERTY + "=emulated)"
                : LinuxBootRoute.alone() ? KvmHost.DEVICE + " is KVM-PVM, which cannot boot a stock Linux, and the "
                        + "emulated KVM host" : KvmHost.DEVICE + " is missing and the emulated KVM host")
                + " cannot boot: " + cause);
    }

    /** The guest's command: its JVM runs exactly the tests the host kept after filtering. */
    private String command() {
        double factor = EMULATED_FACTOR * TestTimeouts.factor();
        List<String> jvm = new ArrayList<>(List.of("-Djna.tmpdir=/dev/shm", "-Djava.io.tmpdir=/dev/shm",
                "-XX:-UsePerfData", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                "-D" + TestTimeouts.PROPERTY + "=" + factor, "-D" + EMULATED_HOST_PROPERTY + "=true"));
        jvm.addAll(NestedGuest.logbackOption());
        String options = String.join(" ", jvm);
        StringBuilder command = new StringBuilder();
        command.append("export JAVA_TOOL_OPTIONS=").append(quote(options)).append('\n');
        command.append("export HOME=/dev/shm\n");
        // The Linux guests' unpacked kernel and initramfs, prepared on the host (LinuxBootRoute): read-only here.
        command.append("export XDG_CACHE_HOME=").append(quote(cacheHome(Path.of("target", "emulated-kvm")
                .toAbsolutePath()).toString())).append('\n');
        Optional.ofNullable(System.getenv("ACTOVISOR_PROJECT_ROOT")).ifPresent(value -> command.append(
                "export ACTOVISOR_PROJECT_ROOT=").append(quote(value)).append('\n'));
        if (NativeRequirement.required()) {
            command.append("export ").append(NativeRequirement.VARIABLE).append("=1\n");
        }
        command.append("exec ").append(quote(Path.of(System.getProperty("java.home"), "bin", "java").toString()))
                .append(" -Xmx768m -cp ").append(quote(System.getProperty("java.class.path"))).append(' ')
                .append(GuestTestRunner.class.getName());
        for (String id : selection()) {
            command.append(' ').append(quote(id));
        }
        return command.toString();
    }

    /** The guest's {@code XDG_CACHE_HOME}: a host directory it sees (read-only) over 9p. */
    private static Path cacheHome(Path work) {
        return work.resolve("cache");
    }

    private boolean hasTag(TestDescriptor c, String tag) {
        return c.getSource().filter(ClassSource.class::isInstance).map(s -> ((ClassSource) s).getClassName())
                .filter(name -> KvmTestClasses.hasTag(name, getClass().getClassLoader(), tag)).isPresent();
    }

    /** The tests (children of each class) the host kept after its filters, in Jupiter's ids. */
    private List<String> selection() {
        List<String> ids = new ArrayList<>();
        for (TestDescriptor c : classes) {
            for (TestDescriptor test : c.getChildren()) {
                ids.add(toJupiter(test.getUniqueId()).toString());
            }
        }
        return ids;
    }

    private static String quote(String s) {
        return "'" + s.replace("'", "'\\''") + "'";
    }

    private UniqueId toJupiter(UniqueId id) {
        return MirroredDescriptor.translate(JUPITER, id);
    }

    private UniqueId fromGuest(String id) {
        return MirroredDescriptor.translate(engine, UniqueId.parse(id));
    }

    private void follow(NestedGuest.Running guest) throws IOException, InterruptedException {
        int seen = 0;
        boolean runnerStarted = false;
        DiagnosticsWatch watch = new DiagnosticsWatch(guest.workDir());
        HungTaskRule hungTasks = new HungTaskRule(TestTimeouts.scaled(HUNG_TASK_GRACE));
        long lastEvent = System.nanoTime();
        long startedAt = System.nanoTime();
        while (true) {
            boolean alive = guest.isAlive();
            List<String> lines = guest.outputLines();
            for (String line : lines.subList(seen, lines.size())) {
                JsonNode event = parse(line);
                if (event == null) {
                    continue;
                }
                lastEvent = System.nanoTime();
                hungTasks.event(lastEvent);
                String kind = event.path("event").asText();
                if (kind.equals(GuestEvents.RUNNER_STARTED)) {
                    runnerStarted = true;
                    LOG.info("emulated KVM host: guest JVM started {} s after the boot", seconds(startedAt));
                } else if (kind.equals(GuestEvents.DONE)) {
                    if (!open.isEmpty() || classes.stream().anyMatch(c -> !done.contains(c.getUniqueId()))) {
                        abandon(guest.failure("the guest JVM ended without reporting every test (stage "
                                + NestedGuest.Stage.TEST + ")"));
                    }
                    return;
                } else if (kind.equals(GuestEvents.RUNNER_FAILED)) {
                    abandon(guest.failure("the guest's test launcher failed (stage " + NestedGuest.Stage.TEST + "): "
                            + event.path("error").path("class").asText() + ": "
                            + event.path("error").path("message").asText()));
                    return;
                } else {
                    replay(kind, event);
                }
            }
            seen = lines.size();
            if (!alive) {
                abandon(guest.failure("the guest stopped during stage " + (runnerStarted ? NestedGuest.Stage.TEST
                        : NestedGuest.Stage.JVM_START) + guest.exitStatus().map(s -> " (command exit status " + s
                        + ")").orElse("")));
                return;
            }
            Duration quiet = Duration.ofNanos(System.nanoTime() - lastEvent);
            if (!runnerStarted && quiet.compareTo(TestTimeouts.scaled(JVM_START)) > 0) {
                abandon(guest.failure("the guest JVM did not start within " + TestTimeouts.scaled(JVM_START)
                        .toSeconds() + " s (stage " + NestedGuest.Stage.JVM_START + ")"));
                return;
            }
            if (runnerStarted && quiet.compareTo(TestTimeouts.scaled(QUIET)) > 0) {
                abandon(guest.diagnosedFailure("the guest reported nothing for " + quiet.toSeconds() + " s while running "
                        + (open.isEmpty() ? "nothing" : open.peek().getDisplayName()) + " (stage "
                        + NestedGuest.Stage.TEST + "): killed as hung"));
                return;
            }
            long now = System.nanoTime();
            hungTasks.reports(watch.check(guest), now);
            if (runnerStarted && hungTasks.hung(now)) {
                abandon(guest.diagnosedFailure("the guest kernel reported a blocked task (\"" + DiagnosticsWatch.HUNG_TASK
                        + "\" on the console, " + hungTasks.reportedFor(now).orElseThrow() / 1_000_000_000L
                        + " s ago) and the guest reported nothing since, for " + quiet.toSeconds() + " s while running "
                        + (open.isEmpty() ? "nothing" : open.peek().getDisplayName()) + " (stage "
                        + NestedGuest.Stage.TEST + "): killed as hung; see diagnostics-*.log in " + guest.workDir()));
                return;
            }
            Thread.sleep(500);
        }
    }

    private static long seconds(long since) {
        return (System.nanoTime() - since) / 1_000_000_000L;
    }

    private static JsonNode parse(String line) {
        if (!line.startsWith("{")) {
            return null;
        }
        try {
            return GuestEvents.JSON.readTree(line);
        } catch (IOException e) {
            return null;
        }
    }

    void replay(String kind, JsonNode event) {
        UniqueId id = fromGuest(event.path("id").asText());
        if (id.equals(engine)) {
            return;
        }
        TestDescriptor d = byId.get(id);
        switch (kind) {
            case GuestEvents.REGISTERED -> {
                TestDescriptor parent = event.has("parent") ? byId.get(fromGuest(event.get("parent").asText())) : null;
                if (d == null && parent != null) {
                    MirroredDescriptor dynamic = new MirroredDescriptor(id, event.path("name").asText(),
                            event.path("legacyName").asText(), GuestEvents.source(event.get("source")),
                            TestDescriptor.Type.valueOf(event.path("type").asText()));
                    parent.addChild(dynamic);
                    byId.put(id, dynamic);
                    listener.dynamicTestRegistered(dynamic);
                }
            }
            case GuestEvents.STARTED -> {
                if (d != null) {
                    listener.executionStarted(d);
                    open.push(d);
                    startTimes.put(id, System.nanoTime());
                }
            }
            case GuestEvents.SKIPPED -> {
                if (d != null) {
                    listener.executionSkipped(d, event.path("reason").asText());
                    markDone(d);
                }
            }
            case GuestEvents.FINISHED -> {
                if (d != null) {
                    open.remove(d);
                    done.add(id);
                    listener.executionFinished(d, result(event));
                    if (d.getParent().filter(p -> p.getUniqueId().equals(engine)).isPresent()) {
                        LOG.info("emulated KVM host: {} took {} s", d.getLegacyReportingName(),
                                seconds(startTimes.getOrDefault(id, System.nanoTime())));
                    }
                }
            }
            default -> LOG.warn("unknown event from the guest: {}", event);
        }
    }

    private void markDone(TestDescriptor d) {
        done.add(d.getUniqueId());
        d.getChildren().forEach(this::markDone);
    }

    private static TestExecutionResult result(JsonNode event) {
        String status = event.path("status").asText();
        Throwable error = event.has("error") ? RemoteFailure.of(event.get("error")) : null;
        return switch (status) {
            case "SUCCESSFUL" -> TestExecutionResult.successful();
            case "ABORTED" -> TestExecutionResult.aborted(error == null ? null
                    : new TestAbortedException(error.getMessage(), error));
            default -> TestExecutionResult.failed(error == null
                    ? new AssertionError("the test failed in the emulated KVM host without an exception") : error);
        };
    }

    /** The guest is gone: the test it was in fails with {@code failure}, every test it never reached too. */
    void abandon(Throwable failure) {
        LOG.error("emulated KVM host: {}", failure.getMessage());
        while (!open.isEmpty()) {
            TestDescriptor d = open.pop();
            for (TestDescriptor child : List.copyOf(d.getChildren())) {
                failUnreached(child, failure);
            }
            done.add(d.getUniqueId());
            listener.executionFinished(d, TestExecutionResult.failed(failure));
        }
        for (TestDescriptor c : classes) {
            failUnreached(c, failure);
        }
    }

    private void failUnreached(TestDescriptor d, Throwable failure) {
        if (done.contains(d.getUniqueId())) {
            return;
        }
        listener.executionStarted(d);
        for (TestDescriptor child : List.copyOf(d.getChildren())) {
            failUnreached(child, failure);
        }
        done.add(d.getUniqueId());
        listener.executionFinished(d, d.getType() == TestDescriptor.Type.CONTAINER ? TestExecutionResult.successful()
                : TestExecutionResult.failed(new IllegalStateException("not run: " + failure.getMessage(), failure)));
    }

    /** The emulated host cannot boot here: every test is skipped with the reason, or fails when it is demanded. */
    private void notRun(String cause) {
        String message = "KVM is not available: " + cause;
        for (TestDescriptor c : classes) {
            listener.executionStarted(c);
            for (TestDescriptor test : c.getChildren()) {
                if (NativeRequirement.required()) {
                    listener.executionStarted(test);
                    listener.executionFinished(test, TestExecutionResult.failed(new AssertionError(message + " (and "
                            + NativeRequirement.VARIABLE + "=1 demands it)")));
                } else {
                    listener.executionSkipped(test, message);
                }
            }
            listener.executionFinished(c, TestExecutionResult.successful());
        }
    }
}
