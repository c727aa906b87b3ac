package io.actovisor.it.architecture;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.tngtech.archunit.core.domain.JavaClasses;
import com.tngtech.archunit.core.importer.ClassFileImporter;
import com.tngtech.archunit.lang.ArchRule;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** The module map's rules fail on the known-bad classes of {@code fixture}: each rule can fail. */
class ModuleMapFixtureTest {
    private static final String ROOT = "io.actovisor.it.architecture.fixture";
    private static JavaClasses fixture;

    @BeforeAll
    static void importTheFixture() {
        fixture = new ClassFileImporter().importPackages(ROOT);
    }

    private static String failure(ArchRule rule) {
        return assertThrows(AssertionError.class, () -> rule.check(fixture)).getMessage();
    }

    @Test
    void layeringFindsAKernelBindingThatUsesADeviceAndTheVmmUsingADemo() {
        String m = failure(ModuleMap.layering(ROOT, true));
        assertTrue(m.contains("fixture.kernel.BadBinding") && m.contains("fixture.devices.SomeDevice"), m);
        assertTrue(m.contains("fixture.vmm.UsesDemo") && m.contains("fixture.demos.Demo"), m);
        // a device using a kernel binding is allowed
        assertTrue(!m.contains("Method <" + ROOT + ".devices.SomeDevice.size()>"), m);
    }

    @Test
    void moduleCyclesFindKernelAndDevicesUsingEachOther() {
        String m = failure(ModuleMap.noModuleCycles(ROOT));
        assertTrue(m.contains("module kernel") && m.contains("module devices"), m);
    }

    @Test
    void packageCyclesFindTwoPackagesOfOneModuleUsingEachOther() {
        String m = failure(ModuleMap.noPackageCycles(ROOT));
        assertTrue(m.contains("package actors.a") && m.contains("package actors.b"), m);
    }
}
