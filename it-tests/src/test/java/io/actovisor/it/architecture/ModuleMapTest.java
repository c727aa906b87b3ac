package io.actovisor.it.architecture;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.tngtech.archunit.core.domain.JavaClasses;
import com.tngtech.archunit.core.importer.ClassFileImporter;
import java.util.Set;
import java.util.TreeSet;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The production classes of every module hold to the module map: no import against the layering, no cycle between
 * modules or between the packages of a module. Fails the build ({@code mvn verify}) where they do not.
 */
class ModuleMapTest {
    private static JavaClasses main;

    @BeforeAll
    static void importTheMainClasses() {
        main = new ClassFileImporter().withImportOption(ModuleMap.MAIN_CLASSES).importPackages("io.actovisor");
    }

    @Test
    void everyModuleIsOnTheClassPath() {
        Set<String> seen = new TreeSet<>();
        main.forEach(c -> ModuleMap.module(c).ifPresent(seen::add));
        assertEquals(new TreeSet<>(ModuleMap.MAY_USE.keySet()), seen,
                "the architecture test sees the main classes of these modules");
        assertTrue(main.size() > 300, "imported " + main.size() + " classes");
    }

    @Test
    void everyModuleUsesOnlyTheModulesBelowIt() {
        ModuleMap.layering("io.actovisor", false).check(main);
    }

    @Test
    void noCycleBetweenModules() {
        ModuleMap.noModuleCycles("io.actovisor").check(main);
    }

    @Test
    void noCycleBetweenThePackagesOfAModule() {
        ModuleMap.noPackageCycles("io.actovisor").check(main);
    }

    @Test
    void eachModulesClassesLiveInItsPackage() {
        ModuleMap.classesLiveInTheirModulesPackage("io.actovisor").check(main);
    }
}
