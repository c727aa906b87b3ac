package io.actovisor.it.emulated;

import static org.junit.platform.engine.discovery.DiscoverySelectors.selectClass;

import io.actovisor.memory.testing.KvmHost;
import java.util.ArrayList;
import java.util.List;
import java.util.ServiceLoader;
import java.util.function.Predicate;
import org.junit.platform.engine.EngineDiscoveryRequest;
import org.junit.platform.engine.ExecutionRequest;
import org.junit.platform.engine.Filter;
import org.junit.platform.engine.TestDescriptor;
import org.junit.platform.engine.TestEngine;
import org.junit.platform.engine.TestExecutionResult;
import org.junit.platform.engine.UniqueId;
import org.junit.platform.engine.discovery.ClassNameFilter;
import org.junit.platform.engine.discovery.ClassSelector;
import org.junit.platform.engine.discovery.UniqueIdSelector;
import org.junit.platform.engine.support.descriptor.EngineDescriptor;
import org.junit.platform.launcher.core.LauncherDiscoveryRequestBuilder;

/**
 * A JUnit Platform engine that runs this project's {@code kvm}-tagged test classes (from the test jars of devices
 * and actors and from it-tests itself) inside the emulated KVM host, where the module runs leave them out
 * ({@link KvmHost#leftOutOfModuleRuns()}: no {@code /dev/kvm}, or {@code actovisor.kvm=emulated}), and the
 * classes that boot Linux where {@code /dev/kvm} is KVM-PVM ({@link LinuxBootRoute}). Elsewhere it reports nothing
 * and the classes run natively in their own modules.
 *
 * <p>Discovery mirrors Jupiter's own descriptors of those classes, so every test is reported under its own class and
 * method with pass, fail (with the guest's message and stack) or skip. Execution boots one guest for all of them
 * ({@link GuestSession}: starting a JVM under TCG is the expensive part, so they share one) and replays the events
 * its JVM streams back. Registered in
 * {@code META-INF/services/org.junit.platform.engine.TestEngine}; reached through {@link EmulatedKvmTests}.
 */
public final class EmulatedKvmEngine implements TestEngine {
    public static final String ID = "actovisor-emulated-kvm";

    @Override
    public String getId() {
        return ID;
    }

    @Override
    public TestDescriptor discover(EngineDiscoveryRequest request, UniqueId uniqueId) {
        Root root = new Root(uniqueId);
        // Where /dev/kvm is KVM-PVM, the Linux boot classes come here although the other kvm classes run natively.
        boolean linuxAlone = LinuxBootRoute.alone();
        if (!(KvmHost.leftOutOfModuleRuns() || linuxAlone) || !selected(request, uniqueId)) {
            return root;
        }
        TestEngine jupiter = ServiceLoader.load(TestEngine.class, getClass().getClassLoader()).stream()
                .map(ServiceLoader.Provider::get).filter(e -> e.getId().equals("junit-jupiter")).findFirst()
                .orElseThrow(() -> new IllegalStateException("the Jupiter engine is not on the class path"));
        // Class name filters of the request are the engine's to apply, and -Dactovisor.kvm.classes=KvmGuestTest
        // narrows a run by hand (surefire's -Dtest only picks the classes it scanned in it-tests itself).
        Predicate<String> wanted = Filter.composeFilters(request.getFiltersByType(ClassNameFilter.class))
                .toPredicate().and(KvmTestClasses.only(System.getProperty(KvmTestClasses.ONLY)));
        for (KvmTestClasses.Group group : KvmTestClasses.onClassPath(System.getProperty("java.class.path"),
                getClass().getClassLoader(), wanted, linuxAlone ? LinuxBootRoute.TAG : KvmHost.TAG)) {
            TestDescriptor found = jupiter.discover(LauncherDiscoveryRequestBuilder.request()
                    .selectors(group.classes().stream().map(c -> selectClass(c)).toList()).build(),
                    UniqueId.forEngine("junit-jupiter"));
            for (TestDescriptor jupiterClass : found.getChildren()) {
                TestDescriptor mirrored = mirror(uniqueId, jupiterClass);
                root.addChild(mirrored);
                root.classes.add(mirrored);
            }
        }
        return root;
    }

    private static boolean selected(EngineDiscoveryRequest request, UniqueId engine) {
        String suite = EmulatedKvmTests.class.getName();
        return request.getSelectorsByType(ClassSelector.class).stream().anyMatch(s -> s.getClassName().equals(suite))
                || request.getSelectorsByType(UniqueIdSelector.class).stream()
                        .anyMatch(s -> s.getUniqueId().hasPrefix(engine));
    }

    private static TestDescriptor mirror(UniqueId engine, TestDescriptor jupiter) {
        MirroredDescriptor mirrored = MirroredDescriptor.of(engine, jupiter);
        for (TestDescriptor child : jupiter.getChildren()) {
            mirrored.addChild(mirror(engine, child));
        }
        return mirrored;
    }

    @Override
    public void execute(ExecutionRequest request) {
        Root root = (Root) request.getRootTestDescriptor();
        var listener = request.getEngineExecutionListener();
        listener.executionStarted(root);
        // Post-discovery filters (tags, -Dtest methods) may have pruned classes: only those still attached run.
        List<TestDescriptor> remaining = root.classes.stream().filter(d -> d.getParent().isPresent()).toList();
        if (!remaining.isEmpty()) {
            new GuestSession(root.getUniqueId(), remaining, listener).run();
        }
        listener.executionFinished(root, TestExecutionResult.successful());
    }

    /** The engine's root and the mirrored classes, all run in one boot of the emulated host. */
    static final class Root extends EngineDescriptor {
        final List<TestDescriptor> classes = new ArrayList<>();

        Root(UniqueId id) {
            super(id, "KVM tests in the emulated KVM host");
        }
    }
}
