package io.actovisor.devices.boot;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.kernel.kvm.Kvm;
import io.actovisor.kernel.kvm.KvmVcpu;
import io.actovisor.kernel.kvm.KvmVm;
import io.actovisor.kernel.kvm.VcpuExit;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.FlatView;
import io.actovisor.memory.GuestAddress;
import io.actovisor.memory.GuestMemory;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.MemoryRegion;
import io.actovisor.memory.sys.Posix;
import io.actovisor.memory.sys.ProcessResources;
import io.actovisor.memory.testing.NativeRequirement;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * The two halves of a vCPU kick on real KVM, each alone: {@code immediate_exit} set before {@code KVM_RUN} makes it
 * return at once (the kick that arrives just before entry), and the kick signal alone ends a {@code KVM_RUN} busy in
 * a guest loop (its handler is installed without {@code SA_RESTART}, so the ioctl returns {@code EINTR}).
 */
@Tag("kvm")
class KvmKickTest {
    private static final long RAM = 4L << 20;
    private static final long WORK = 1L << 20;

    @BeforeEach
    void requireKvm() {
        NativeRequirement.requireKvm(Kvm.unavailabilityCause());
    }

    @Test
    void anExitRequestedBeforeEntryMakesKvmRunReturnAtOnce() {
        ProcessResources before = ProcessResources.snapshot();
        try (HostMemory ram = HostMemory.anonymous("kvm-kick-ram", RAM); Kvm kvm = Kvm.open();
                KvmVm vm = kvm.createVm()) {
            boot(ram, vm, "spin");
            try (KvmVcpu vcpu = vm.createVcpu(0)) {
                BootLayout.enterLongMode(vcpu, kvm.supportedCpuid());
                vcpu.requestExit();
                // The guest's first act is printing "spinning" on COM1 (a port exit): it never got that far.
                assertInstanceOf(VcpuExit.Interrupted.class, vcpu.run());
                assertTrue(vcpu.exitRequested(), "the request stays set until cleared");
                assertInstanceOf(VcpuExit.Interrupted.class, vcpu.run(), "and keeps the vCPU out");
                vcpu.clearExitRequest();
                VcpuExit first = vcpu.run();
                assertInstanceOf(VcpuExit.Io.class, first, "once cleared, the guest runs to its first output");
                int port = ((VcpuExit.Io) first).port();
                assertTrue(port >= 0x3f8 && port < 0x400, "a COM1 port, was 0x" + Integer.toHexString(port));
            }
        }
        assertTrue(ProcessResources.snapshot().nativeFdsOpenedSince(before).isEmpty(), "no KVM fd left");
    }

    @Test
    void theKickSignalAloneEndsKvmRunInABusyGuestLoop() throws Exception {
        Posix posix = Posix.system();
        try (HostMemory ram = HostMemory.anonymous("kvm-kick-ram", RAM); Kvm kvm = Kvm.open();
                KvmVm vm = kvm.createVm()) {
            boot(ram, vm, "spin");
            try (KvmVcpu vcpu = vm.createVcpu(0)) {
                BootLayout.enterLongMode(vcpu, kvm.supportedCpuid());
                CompletableFuture<Integer> tid = new CompletableFuture<>();
                CountDownLatch spinning = new CountDownLatch(1);
                CompletableFuture<VcpuExit> ended = new CompletableFuture<>();
                Thread thread = new Thread(() -> {
                    tid.complete(posix.gettid());
                    StringBuilder console = new StringBuilder();
                    try {
                        while (true) {
                            VcpuExit exit = vcpu.run();
                            if (exit instanceof VcpuExit.Io io && !io.in() && io.port() == 0x3f8) {
                                console.append((char) io.data());
                                if (console.toString().contains("spinning")) {
                                    spinning.countDown();
                                }
                            } else if (exit instanceof VcpuExit.Io io && io.in()) {
                                vcpu.completeIn(io, io.port() == 0x3fd ? 0x60 : 0xffffffffL);
                            } else if (!(exit instanceof VcpuExit.Io)) {
                                ended.complete(exit);
                                return;
                            }
                        }
                    } catch (RuntimeException e) {
                        ended.completeExceptionally(e);
                    }
                }, "kick-test-vcpu");
                thread.setDaemon(true);
                thread.start();
                try {
                    kickBySignal(posix, vcpu, tid, spinning, ended);
                } finally {
                    // Never unmap kvm_run under a running vCPU: end the thread first, whatever happened.
                    vcpu.requestExit();
                    thread.join(TimeUnit.SECONDS.toMillis(10));
                }
                assertFalse(thread.isAlive());
            }
        }
    }

    private static void kickBySignal(Posix posix, KvmVcpu vcpu, CompletableFuture<Integer> tid,
            CountDownLatch spinning, CompletableFuture<VcpuExit> ended) throws Exception {
        assertTrue(spinning.await(30, TimeUnit.SECONDS), "the guest reached its loop");
        // A signal that lands between two runs is lost (the guest goes on spinning), so send until one
        // lands inside KVM_RUN; immediate_exit is never set here.
        for (int sent = 0; !ended.isDone() && sent < 3000; sent++) {
            posix.tgkill(posix.getpid(), tid.get(), KvmVcpu.KICK_SIGNAL);
            Thread.sleep(10);
        }
        assertInstanceOf(VcpuExit.Interrupted.class, ended.get(1, TimeUnit.SECONDS));
        assertFalse(vcpu.exitRequested(), "the signal alone did it, not immediate_exit");
    }

    private static void boot(HostMemory ram, KvmVm vm, String program) {
        GuestMemory guest = GuestMemory.of(FlatView.of(List.of(MemoryRegion.ram("ram", GuestAddress.ZERO, ram))));
        BootLayout.write(guest, GuestFirmware.bundled(), new BootLayout.BootInfo(program, RAM, WORK));
        vm.setMemorySlot(0, AddressRange.of(0, RAM), ram.base(), false);
    }
}
