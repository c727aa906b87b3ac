package io.actovisor.it.architecture;

import static com.tngtech.archunit.lang.syntax.ArchRuleDefinition.methods;
import static com.tngtech.archunit.lang.syntax.ArchRuleDefinition.noClasses;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.tngtech.archunit.base.DescribedPredicate;
import com.tngtech.archunit.core.domain.JavaAccess;
import com.tngtech.archunit.core.domain.JavaClass;
import com.tngtech.archunit.core.domain.JavaClasses;
import com.tngtech.archunit.core.domain.JavaModifier;
import com.tngtech.archunit.core.importer.ClassFileImporter;
import com.tngtech.archunit.thirdparty.org.objectweb.asm.ClassReader;
import com.tngtech.archunit.thirdparty.org.objectweb.asm.ClassVisitor;
import com.tngtech.archunit.thirdparty.org.objectweb.asm.MethodVisitor;
import com.tngtech.archunit.thirdparty.org.objectweb.asm.Opcodes;
import io.actovisor.actors.vfio.ContainerDmaActor;
import io.actovisor.devices.iommu.DmaPort;
import io.actovisor.devices.iommu.Iommu;
import java.io.IOException;
import java.io.InputStream;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * DESIGN.md's rule for the actors: counts and IOMMU updates are serialized by mailboxes, not locks. No class in
 * {@code io.actovisor.actors} takes a monitor or a {@code java.util.concurrent.locks} lock or waits on or notifies a
 * monitor, and a container's IOMMU has one owner, {@link ContainerDmaActor}: no other class of the actors module calls
 * the IOMMU or its data path.
 *
 * <p>No exemptions. The one lock a vCPU needs (a kick against the close that unmaps kvm_run; what the paused thread
 * waits on) lives in {@code kernel}'s {@code VcpuThread}; the actors' {@code VcpuHandle} composes it.
 */
class ActorConcurrencyTest {
    private static final String ACTORS = "io.actovisor.actors..";
    private static JavaClasses actors;

    @BeforeAll
    static void importTheActors() {
        actors = new ClassFileImporter().withImportOption(ModuleMap.MAIN_CLASSES).importPackages("io.actovisor.actors");
    }

    @Test
    void noActorUsesTheLocksOfJavaUtilConcurrent() {
        noClasses().that().resideInAPackage(ACTORS)
                .should().dependOnClassesThat().resideInAPackage("java.util.concurrent.locks..")
                .check(actors);
    }

    @Test
    void noActorHasASynchronizedMethod() {
        methods().that().areDeclaredInClassesThat().resideInAPackage(ACTORS)
                .should().notHaveModifier(JavaModifier.SYNCHRONIZED)
                .check(actors);
    }

    @Test
    void noActorHasASynchronizedBlock() throws IOException {
        Set<String> offenders = new TreeSet<>();
        int read = 0;
        for (JavaClass c : actors) {
            try (InputStream bytes = ActorConcurrencyTest.class.getClassLoader().getResourceAsStream(
                    c.getName().replace('.', '/') + ".class")) {
                if (bytes == null) {
                    continue;
                }
                read++;
                new ClassReader(bytes).accept(new ClassVisitor(Opcodes.ASM9) {
                    @Override
                    public MethodVisitor visitMethod(int access, String name, String descriptor, String signature,
                            String[] exceptions) {
                        return new MethodVisitor(Opcodes.ASM9) {
                            @Override
                            public void visitInsn(int opcode) {
                                if (opcode == Opcodes.MONITORENTER) {
                                    offenders.add(c.getName() + "." + name);
                                }
                            }
                        };
                    }
                }, ClassReader.SKIP_DEBUG);
            }
        }
        assertTrue(read > 50, "read the byte code of " + read + " classes");
        assertEquals(Set.of(), offenders, "synchronized blocks in actors (a mailbox serializes their state)");
    }

    @Test
    void noActorWaitsOnOrNotifiesAMonitor() {
        noClasses().that().resideInAPackage(ACTORS)
                .should().callMethod(Object.class, "wait")
                .orShould().callMethod(Object.class, "wait", long.class)
                .orShould().callMethod(Object.class, "wait", long.class, int.class)
                .orShould().callMethod(Object.class, "notify")
                .orShould().callMethod(Object.class, "notifyAll")
                .because("an actor waits for nothing but its mailbox")
                .check(actors);
    }

    @Test
    void onlyTheContainersIommuSideCallsTheIommu() {
        DescribedPredicate<JavaAccess<?>> iommuCalls = DescribedPredicate.describe(
                "a call of Iommu, DmaPort or IommuBackend.Context", access -> {
                    JavaClass owner = access.getTargetOwner();
                    return List.of(Iommu.class.getName(), DmaPort.class.getName(),
                            "io.actovisor.actors.vfio.IommuBackend$Context").contains(owner.getName())
                            || owner.isAssignableTo(Iommu.class);
                });
        noClasses().that().resideInAPackage(ACTORS)
                .and().doNotHaveFullyQualifiedName(ContainerDmaActor.class.getName())
                .and().doNotHaveFullyQualifiedName("io.actovisor.actors.vfio.IommuBackend")
                .and(DescribedPredicate.describe("not an IommuBackend of its own",
                        c -> !c.getName().startsWith("io.actovisor.actors.vfio.IommuBackend$")))
                .should().accessTargetWhere(iommuCalls)
                .because("a container's IOMMU has one owner, ContainerDmaActor; the container asks it for every"
                        + " effect")
                .check(actors);
    }
}
