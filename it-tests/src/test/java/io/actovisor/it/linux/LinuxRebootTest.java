package io.actovisor.it.linux;

import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.actors.linux.LinuxGuestEvent;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.sys.ProcessResources;
import java.time.Duration;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/** {@code reboot} in the guest pulses the i8042 reset line: the VM stops and leaves nothing behind. */
@Tag("kvm")
@Tag("linux-boot")
@ExtendWith(EmulatedHostFaultRetry.class)
class LinuxRebootTest {
    private static ActorTestKit kit;
    /** Boots so far: a boot that the emulated host's fault stopped is retried under a new name. */
    private static int boots;

    /** Per test, so that a machine without KVM reports each test skipped with the reason, not a class of none. */
    @BeforeEach
    void start() {
        LinuxVm.requireFacilities();
        LinuxVm.requireHardwareKvm();
        if (kit == null) {
            kit = ActorTestKit.create();
        }
    }

    @AfterAll
    static void stop() {
        if (kit != null) {
            kit.shutdownTestKit();
        }
    }

    @Test
    void rebootStopsTheVmCleanly() {
        ProcessResources before = ProcessResources.snapshot();
        LinuxVm vm = LinuxGuestTest.boot(kit, "linux-reboot" + (boots++ == 0 ? "" : "-" + boots));
        HostMemory ram = vm.topology.memory().get(0);
        vm.type("reboot");
        vm.events.expectMessageClass(LinuxGuestEvent.ResetRequested.class, LinuxVm.COMMAND);
        TestProbe<Object> watcher = kit.createTestProbe();
        watcher.expectTerminated(vm.vm, Duration.ofSeconds(30));
        assertTrue(ram.isClosed(), "the VM released its RAM");
        assertTrue(ProcessResources.snapshot().nativeFdsOpenedSince(before).isEmpty(), "no KVM fd left: "
                + ProcessResources.snapshot().nativeFdsOpenedSince(before));
    }
}
