package io.actovisor.it.emulated;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.platform.engine.discovery.DiscoverySelectors.selectClass;

import com.fasterxml.jackson.databind.JsonNode;
import io.actovisor.kernel.kvm.Kvm;
import io.actovisor.memory.testing.KvmHost;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;
import java.util.stream.Collectors;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.platform.engine.TestDescriptor;
import org.junit.platform.engine.UniqueId;
import org.junit.platform.engine.discovery.ClassNameFilter;
import org.junit.platform.engine.support.descriptor.MethodSource;
import org.junit.platform.launcher.core.LauncherDiscoveryRequestBuilder;

/** The emulated host's engine without a guest: what it discovers, how ids and failures cross from the guest. */
class EmulatedKvmEngineTest {
    private static final Set<String> KVM_CLASSES = Set.of("io.actovisor.devices.boot.KvmGuestTest",
            "io.actovisor.devices.boot.KvmKickTest", "io.actovisor.kernel.kvm.VcpuThreadTest",
            "io.actovisor.actors.kvm.KvmActorsTest",
            "io.actovisor.actors.embedding.EmbeddedVmmTest", "io.actovisor.it.GuestBalloonTest",
            "io.actovisor.it.CoordinatedGuestBalloonTest",
            "io.actovisor.it.VmmProcessTest", "io.actovisor.it.linux.LinuxGuestTest",
            "io.actovisor.it.linux.LinuxRebootTest", "io.actovisor.it.linux.LinuxBadInputTest",
            "io.actovisor.it.linux.LinuxBlkCoherenceTest");
    /** The classes that boot Linux: on a KVM-PVM host they alone run in the emulated host. */
    private static final Set<String> LINUX_BOOT_CLASSES = Set.of("io.actovisor.it.linux.LinuxGuestTest",
            "io.actovisor.it.linux.LinuxRebootTest", "io.actovisor.it.linux.LinuxBlkCoherenceTest");
    private final String switchBefore = System.getProperty(KvmHost.PROPERTY);

    @AfterEach
    void restoreSwitch() {
        if (switchBefore == null) {
            System.clearProperty(KvmHost.PROPERTY);
        } else {
            System.setProperty(KvmHost.PROPERTY, switchBefore);
        }
    }

    private static TestDescriptor discover(ClassNameFilter... filters) {
        UniqueId engine = UniqueId.forEngine(EmulatedKvmEngine.ID);
        return new EmulatedKvmEngine().discover(LauncherDiscoveryRequestBuilder.request()
                .selectors(selectClass(EmulatedKvmTests.class)).filters(filters).build(), engine);
    }

    private static Set<String> classes(TestDescriptor root) {
        return root.getChildren().stream().map(TestDescriptor::getLegacyReportingName).collect(Collectors.toSet());
    }

    @Test
    void whenForcedItMirrorsEveryKvmTaggedClassOfTheTestJarsAndOfItTests() {
        System.setProperty(KvmHost.PROPERTY, "emulated");
        TestDescriptor root = discover();
        assertEquals(KVM_CLASSES, classes(root));
        TestDescriptor guestTest = root.getChildren().stream()
                .filter(c -> c.getLegacyReportingName().equals("io.actovisor.devices.boot.KvmGuestTest")).findFirst()
                .orElseThrow();
        TestDescriptor method = guestTest.getChildren().iterator().next();
        MethodSource source = (MethodSource) method.getSource().orElseThrow();
        assertEquals("io.actovisor.devices.boot.KvmGuestTest", source.getClassName(), "reported under its own class");
        assertEquals("memtestRunsToHaltAndItsChecksumMatchesGuestMemory", source.getMethodName());
        assertEquals(UniqueId.forEngine(EmulatedKvmEngine.ID).append("class", "io.actovisor.devices.boot.KvmGuestTest")
                .append("method", "memtestRunsToHaltAndItsChecksumMatchesGuestMemory()"), method.getUniqueId());
        assertTrue(method.getTags().isEmpty(), "no kvm tag: the module runs' tag filter must not drop the mirror");
    }

    @Test
    void classNameFiltersAndTheClassesPropertyNarrowTheRun() {
        System.setProperty(KvmHost.PROPERTY, "emulated");
        assertEquals(Set.of("io.actovisor.devices.boot.KvmGuestTest"),
                classes(discover(ClassNameFilter.includeClassNamePatterns(".*KvmGuestTest"))));
        System.setProperty(KvmTestClasses.ONLY, "KvmActorsTest, io.actovisor.it.VmmProcessTest");
        try {
            assertEquals(Set.of("io.actovisor.actors.kvm.KvmActorsTest", "io.actovisor.it.VmmProcessTest"),
                    classes(discover()));
        } finally {
            System.clearProperty(KvmTestClasses.ONLY);
        }
    }

    @Test
    void whereTheModulesRunTheKvmClassesItReportsNothingButTheLinuxBootClassesOfAKvmPvmHost() {
        System.setProperty(KvmHost.PROPERTY, "auto");
        Assumptions.assumeTrue(Files.exists(KvmHost.DEVICE), "this machine has no /dev/kvm");
        // The root pom's linux-boot-emulated-pvm profile leaves these out of it-tests' own run on the same condition.
        Set<String> here = Kvm.emulatesGuestKernels() ? LINUX_BOOT_CLASSES : Set.of();
        assertEquals(here, classes(discover()));
        System.setProperty(KvmHost.PROPERTY, "none");
        assertEquals(here, classes(discover()), "with /dev/kvm and none, the module runs skip the kvm classes (and "
                + "the engine reports the linux-boot classes of a KVM-PVM host skipped)");
    }

    @Test
    void theLinuxBootClassesAreKvmClassesToo() {
        System.setProperty(KvmHost.PROPERTY, "emulated");
        assertTrue(KVM_CLASSES.containsAll(LINUX_BOOT_CLASSES), "where every kvm class runs in the emulated host, "
                + "so do the linux-boot ones");
        for (String name : LINUX_BOOT_CLASSES) {
            assertTrue(KvmTestClasses.hasTag(name, getClass().getClassLoader(), LinuxBootRoute.TAG), name);
        }
    }

    @Test
    void idsCrossBetweenTheGuestsJupiterAndThisEngine() {
        UniqueId mine = UniqueId.forEngine(EmulatedKvmEngine.ID);
        UniqueId jupiter = UniqueId.parse("[engine:junit-jupiter]/[class:a.B]/[test-template:c(int)]"
                + "/[test-template-invocation:#2]");
        UniqueId translated = MirroredDescriptor.translate(mine, jupiter);
        assertEquals("[engine:" + EmulatedKvmEngine.ID + "]/[class:a.B]/[test-template:c(int)]"
                + "/[test-template-invocation:#2]", translated.toString());
        assertEquals(jupiter, MirroredDescriptor.translate(UniqueId.forEngine("junit-jupiter"), translated));
    }

    @Test
    void aFailureInTheGuestKeepsItsKindMessageAndFrames() throws Exception {
        AssertionError assertion = new AssertionError("expected <1> but was <2>");
        Throwable back = RemoteFailure.of(roundTrip(assertion));
        assertInstanceOf(AssertionError.class, back, "an assertion stays a test failure");
        assertEquals("expected <1> but was <2>", back.getMessage());
        assertEquals(List.of(assertion.getStackTrace()), List.of(back.getStackTrace()));

        IOException io = new IOException("disk on fire", new UncheckedIOException(new IOException("inner")));
        Throwable error = RemoteFailure.of(roundTrip(io));
        assertInstanceOf(RemoteFailure.class, error, "an exception stays an error");
        assertEquals("java.io.IOException: disk on fire", error.toString());
        assertEquals("java.io.UncheckedIOException: java.io.IOException: inner", error.getCause().toString());
    }

    private static JsonNode roundTrip(Throwable t) throws IOException {
        return GuestEvents.JSON.readTree(GuestEvents.JSON.writeValueAsString(GuestEvents.describe(t)));
    }

    @Test
    void testRootsAreTheProjectsTestJarsAndTestClassDirectories(@TempDir Path dir) throws IOException {
        Path jar = Files.createFile(dir.resolve("actovisor-devices-0.1.0-SNAPSHOT-tests.jar"));
        Path plain = Files.createFile(dir.resolve("actovisor-devices-0.1.0-SNAPSHOT.jar"));
        Path classes = Files.createDirectories(dir.resolve("it-tests/target/test-classes"));
        Path other = Files.createFile(dir.resolve("junit-jupiter-api-5.14.4.jar"));
        assertEquals("devices", KvmTestClasses.module(jar));
        assertEquals("it-tests", KvmTestClasses.module(classes));
        assertNull(KvmTestClasses.module(plain));
        assertNull(KvmTestClasses.module(other));
    }
}
