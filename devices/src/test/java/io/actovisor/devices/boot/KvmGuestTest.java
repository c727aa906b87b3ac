package io.actovisor.devices.boot;

import io.actovisor.kernel.kvm.Kvm;
import io.actovisor.kernel.kvm.KvmVcpu;
import io.actovisor.kernel.kvm.KvmVm;
import io.actovisor.kernel.kvm.VcpuExit;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.memory.AddressRange;
import io.actovisor.memory.FlatView;
import io.actovisor.memory.GuestAddress;
import io.actovisor.memory.GuestMemory;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.MemoryRegion;
import io.actovisor.memory.sys.ProcessResources;
import io.actovisor.memory.testing.NativeRequirement;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/** The bundled firmware on real KVM, driven by a minimal exit loop (the VcpuHandle's job in a VM). */
@Tag("kvm")
class KvmGuestTest {
    private static final long RAM = 4L << 20;
    private static final long WORK = 1L << 20;

    /** Per test, so that a machine without KVM reports each test skipped with the reason, not a class of none. */
    @BeforeEach
    void requireKvm() {
        NativeRequirement.requireKvm(Kvm.unavailabilityCause());
    }

    @Test
    void memtestRunsToHaltAndItsChecksumMatchesGuestMemory() {
        ProcessResources before = ProcessResources.snapshot();
        StringBuilder console = new StringBuilder();
        List<Long> reports = new ArrayList<>();
        VcpuExit last;
        long hostChecksum;
        try (HostMemory ram = HostMemory.anonymous("kvm-test-ram", RAM); Kvm kvm = Kvm.open();
                KvmVm vm = kvm.createVm()) {
            GuestMemory guest = GuestMemory.of(FlatView.of(List.of(MemoryRegion.ram("ram", GuestAddress.ZERO, ram))));
            BootLayout.write(guest, GuestFirmware.bundled(), new BootLayout.BootInfo("memtest", RAM, WORK, 0x5eed));
            vm.setMemorySlot(0, AddressRange.of(0, RAM), ram.base(), false);
            try (KvmVcpu vcpu = vm.createVcpu(0)) {
                BootLayout.enterLongMode(vcpu, kvm.supportedCpuid());
                last = runToEnd(vcpu, console, reports);
            }
            hostChecksum = BootLayout.checksum(guest, BootLayout.WORK_BASE, WORK);
        }
        assertInstanceOf(VcpuExit.Hlt.class, last, "the guest halts; console: " + console);
        assertTrue(console.toString().contains("hello from guest"), console.toString());
        assertEquals(List.of(hostChecksum), reports, "the guest's checksum is the host's checksum of guest memory");
        assertTrue(ProcessResources.snapshot().nativeFdsOpenedSince(before).isEmpty(), "no KVM fd left");
    }

    /**
     * Port I/O: COM1 output and line status, the report ports; everything else reads all ones. An interrupted
     * {@code KVM_RUN} enters the guest again.
     */
    static VcpuExit runToEnd(KvmVcpu vcpu, StringBuilder console, List<Long> reports) {
        long low = 0;
        for (int exits = 0; exits < 1_000_000; exits++) {
            VcpuExit exit = vcpu.run();
            if (exit instanceof VcpuExit.Io io) {
                if (io.in()) {
                    vcpu.completeIn(io, io.port() == 0x3fd ? 0x60 : 0xffffffffL);
                } else if (io.port() == 0x3f8) {
                    console.append((char) io.data());
                } else if (io.port() == 0x510) {
                    low = io.data();
                } else if (io.port() == 0x514) {
                    reports.add(low | io.data() << 32);
                }
                continue;
            }
            if (exit instanceof VcpuExit.Interrupted) {
                // KVM_RUN answered EINTR: a signal reached this thread (nothing here kicks it). As in any VMM's
                // run loop, the guest has not stopped: enter it again. Seen under load on a KVM-PVM host.
                continue;
            }
            return exit;
        }
        throw new AssertionError("the guest did not stop; console: " + console);
    }
}
