package io.actovisor.it.architecture;

import static com.tngtech.archunit.library.Architectures.layeredArchitecture;
import static com.tngtech.archunit.library.dependencies.SlicesRuleDefinition.slices;

import com.tngtech.archunit.base.DescribedPredicate;
import com.tngtech.archunit.core.domain.JavaClass;
import com.tngtech.archunit.core.importer.ImportOption;
import com.tngtech.archunit.core.importer.Location;
import com.tngtech.archunit.lang.ArchCondition;
import com.tngtech.archunit.lang.ArchRule;
import com.tngtech.archunit.lang.ConditionEvents;
import com.tngtech.archunit.lang.SimpleConditionEvent;
import com.tngtech.archunit.lang.syntax.ArchRuleDefinition;
import com.tngtech.archunit.library.Architectures.LayeredArchitecture;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The module map as rules over packages (docs/architecture.md): module {@code m} is package {@code <root>.m}, and a
 * module may use only the modules below it. The rules take the root package as a parameter so that the same rules
 * run over the production classes ({@code io.actovisor}) and over the known-bad fixtures in the test tree.
 */
final class ModuleMap {
    /** Each module and the modules it may use (besides itself): the layering of the poms, one way only. */
    static final Map<String, List<String>> MAY_USE = Map.of(
            "memory", List.of(),
            "kernel", List.of("memory"),
            "devices", List.of("kernel", "memory"),
            "actors", List.of("devices", "kernel", "memory"),
            "config", List.of("memory"),
            "testkit", List.of("actors", "devices", "kernel", "memory"),
            "vmm", List.of("config", "actors", "devices", "kernel", "memory"),
            "demos", List.of("actors", "devices", "kernel", "memory"),
            "cluster", List.of("vmm", "config", "actors", "devices", "kernel", "memory"));

    /** Main code only: no test classes directories and no test jars (the module's own tests may use its test kit). */
    static final ImportOption MAIN_CLASSES = new ImportOption() {
        @Override
        public boolean includes(Location location) {
            return !location.contains("/test-classes/") && !location.matches(Pattern.compile(".*-tests\\.jar.*"));
        }
    };

    private static final Pattern MODULE_OF_LOCATION =
            Pattern.compile(".*/(?:actovisor-([a-z-]+)-\\d[^/]*\\.jar|([a-z-]+)/target/classes/).*");

    private ModuleMap() {
    }

    /** Every module uses only the modules below it; {@code optional}: a module with no classes is no error. */
    static ArchRule layering(String root, boolean optional) {
        LayeredArchitecture layers = layeredArchitecture().consideringOnlyDependenciesInAnyPackage(root + "..")
                .withOptionalLayers(optional);
        for (String module : MAY_USE.keySet().stream().sorted().toList()) {
            layers = layers.layer(module).definedBy(root + "." + module + "..");
        }
        for (Map.Entry<String, List<String>> e : MAY_USE.entrySet().stream()
                .sorted(Map.Entry.comparingByKey()).toList()) {
            layers = e.getValue().isEmpty() ? layers.whereLayer(e.getKey()).mayNotAccessAnyLayer()
                    : layers.whereLayer(e.getKey()).mayOnlyAccessLayers(e.getValue().toArray(String[]::new));
        }
        return layers.because("dependencies point one way: memory <- kernel <- devices <- actors <- "
                + "(testkit, vmm, demos) <- cluster, and config depends on memory only");
    }

    /** No cycle between modules ({@code <root>.(*)..}). */
    static ArchRule noModuleCycles(String root) {
        return slices().matching(root + ".(*)..").namingSlices("module $1").should().beFreeOfCycles();
    }

    /**
     * No cycle between the packages within a module ({@code <root>.(*).(*)..}, e.g. vmm.api and vmm.cli). A module's
     * own package ({@code <root>.m}, e.g. vmm's Main) is in no slice: it may use the module's packages and they it.
     */
    static ArchRule noPackageCycles(String root) {
        return slices().matching(root + ".(*).(*)..").namingSlices("package $1.$2").should().beFreeOfCycles();
    }

    /** A class from module {@code m}'s jar (or target/classes) lives in {@code <root>.m}, so the rules see modules. */
    static ArchRule classesLiveInTheirModulesPackage(String root) {
        return ArchRuleDefinition.classes().that(DescribedPredicate.describe("come from a module of this project",
                (JavaClass c) -> module(c).isPresent())).should(new ArchCondition<JavaClass>(
                        "reside in the package of their module (" + root + ".<module>..)") {
                    @Override
                    public void check(JavaClass c, ConditionEvents events) {
                        String module = module(c).orElseThrow();
                        boolean ok = c.getPackageName().equals(root + "." + module)
                                || c.getPackageName().startsWith(root + "." + module + ".");
                        events.add(new SimpleConditionEvent(c, ok, c.getName() + " comes from module " + module
                                + " but is not in package " + root + "." + module));
                    }
                });
    }

    /** The module whose jar or classes directory {@code c} was imported from. */
    static Optional<String> module(JavaClass c) {
        return c.getSource().map(s -> s.getUri().toString()).map(MODULE_OF_LOCATION::matcher)
                .filter(Matcher::matches).map(m -> m.group(1) != null ? m.group(1) : m.group(2));
    }
}
