package io.actovisor.it.emulated;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.memory.testing.KvmHost;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.platform.engine.EngineExecutionListener;
import org.junit.platform.engine.TestDescriptor;
import org.junit.platform.engine.TestExecutionResult;
import org.junit.platform.engine.UniqueId;
import org.junit.platform.engine.discovery.DiscoverySelectors;
import org.junit.platform.launcher.core.LauncherDiscoveryRequestBuilder;

/** What the host reports when the guest's events stop half-way: the test in progress and every test not reached fail. */
class GuestSessionTest {
    private final String switchBefore = System.getProperty(KvmHost.PROPERTY);

    @AfterEach
    void restoreSwitch() {
        if (switchBefore == null) {
            System.clearProperty(KvmHost.PROPERTY);
        } else {
            System.setProperty(KvmHost.PROPERTY, switchBefore);
        }
    }

    /** Every call, as "kind name [status: message]". */
    private static final class Recorder implements EngineExecutionListener {
        final List<String> calls = new ArrayList<>();

        @Override
        public void executionStarted(TestDescriptor d) {
            calls.add("started " + d.getDisplayName());
        }

        @Override
        public void executionSkipped(TestDescriptor d, String reason) {
            calls.add("skipped " + d.getDisplayName() + ": " + reason);
        }

        @Override
        public void executionFinished(TestDescriptor d, TestExecutionResult result) {
            calls.add("finished " + d.getDisplayName() + " " + result.getStatus()
                    + result.getThrowable().map(t -> ": " + t.getMessage()).orElse(""));
        }
    }

    private static String event(String kind, String jupiterId, String extra) {
        return "{\"event\":\"" + kind + "\",\"id\":\"" + jupiterId + "\"" + extra + "}";
    }

    @Test
    void aGuestThatDiesInATestFailsItAndEveryTestItDidNotReach() throws Exception {
        System.setProperty(KvmHost.PROPERTY, "emulated");
        UniqueId engineId = UniqueId.forEngine(EmulatedKvmEngine.ID);
        TestDescriptor root = new EmulatedKvmEngine().discover(LauncherDiscoveryRequestBuilder.request()
                .selectors(DiscoverySelectors.selectClass(EmulatedKvmTests.class)).build(), engineId);
        TestDescriptor actors = root.getChildren().stream()
                .filter(c -> c.getLegacyReportingName().equals("io.actovisor.actors.kvm.KvmActorsTest")).findFirst()
                .orElseThrow();
        List<TestDescriptor> tests = List.copyOf(actors.getChildren());
        assertTrue(tests.size() >= 2, "KvmActorsTest has several tests");
        Recorder recorder = new Recorder();
        GuestSession session = new GuestSession(engineId, List.of(actors), recorder);
        String classId = "[engine:junit-jupiter]/[class:io.actovisor.actors.kvm.KvmActorsTest]";
        String first = MirroredDescriptor.translate(UniqueId.forEngine("junit-jupiter"), tests.get(0).getUniqueId())
                .toString();
        String second = MirroredDescriptor.translate(UniqueId.forEngine("junit-jupiter"), tests.get(1).getUniqueId())
                .toString();
        session.replay("started", GuestEvents.JSON.readTree(event("started", classId, "")));
        session.replay("started", GuestEvents.JSON.readTree(event("started", first, "")));
        session.replay("finished", GuestEvents.JSON.readTree(event("finished", first, ",\"status\":\"SUCCESSFUL\"")));
        session.replay("started", GuestEvents.JSON.readTree(event("started", second, "")));
        session.abandon(new IllegalStateException("the guest stopped during stage test"));

        List<String> expected = new ArrayList<>(List.of("started KvmActorsTest",
                "started " + tests.get(0).getDisplayName(),
                "finished " + tests.get(0).getDisplayName() + " SUCCESSFUL",
                "started " + tests.get(1).getDisplayName(),
                "finished " + tests.get(1).getDisplayName() + " FAILED: the guest stopped during stage test"));
        for (TestDescriptor unreached : tests.subList(2, tests.size())) {
            expected.add("started " + unreached.getDisplayName());
            expected.add("finished " + unreached.getDisplayName()
                    + " FAILED: not run: the guest stopped during stage test");
        }
        expected.add("finished KvmActorsTest FAILED: the guest stopped during stage test");
        assertEquals(expected, recorder.calls);
    }
}
