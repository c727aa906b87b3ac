package io.actovisor.it.linux;

import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.actors.linux.LinuxGuest;
import io.actovisor.actors.vm.VmTopology;
import io.actovisor.devices.boot.linux.BzImage;
import io.actovisor.devices.boot.linux.Initramfs;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.MemoryRegion;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The stock Debian kernel boots on actovisor's KVM to a busybox shell. */
@Tag("kvm")
class LinuxBootTest {
    private static ActorTestKit kit;
    private static Path kernel;
    @TempDir
    static Path cache;

    @BeforeAll
    static void start() {
        LinuxVm.requireFacilities();
        kernel = LinuxVm.newestKernel().orElseThrow();
        kit = ActorTestKit.create();
    }

    @AfterAll
    static void stop() {
        if (kit != null) {
            kit.shutdownTestKit();
        }
    }

    @Test
    void bootsToAShell() throws Exception {
        Path initrd = Initramfs.cached(new Initramfs.Inputs(Initramfs.findBusybox().orElseThrow(),
                Initramfs.moduleTreeOf(kernel), Initramfs.DEFAULT_MODULES), cache);
        HostMemory ram = HostMemory.anonymous("linux-ram", 128L << 20);
        VmTopology topology = new VmTopology("linux", List.of(ram), List.of(MemoryRegion.ram("ram",
                AddressRange.of(0, 128L << 20), ram, 0)), Optional.empty(), List.of(), List.of(),
                Optional.of(VmTopology.Guest.linux(LinuxVm.guest(BzImage.load(kernel), Files.readAllBytes(initrd),
                        "console=ttyS0 reboot=k pci=off quiet mitigations=off", List.of()), 1)), List.of());
        try (LinuxVm vm = new LinuxVm(kit, topology, "boot")) {
            vm.await(Initramfs.READY, Duration.ofSeconds(1200));
            vm.type("echo hello from $(uname -r)");
            vm.await("hello from 6", Duration.ofSeconds(10));
        }
        assertTrue(ram.isClosed());
    }
}
