package io.actovisor.kernel.kvm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.memory.AddressRange;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.sys.NativeBuffer;
import io.actovisor.memory.sys.Posix;
import io.actovisor.memory.sys.ProcessResources;
import io.actovisor.memory.testing.NativeRequirement;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * The vCPU thread's control on real KVM, with a few bytes of 16-bit guest code: start, halt, port exits and their
 * answers, kick, pause and resume, a signal nobody asked for, a failing exit handler, stop. The waits are bounds on
 * a hang, never measurements.
 */
@Tag("kvm")
class VcpuThreadTest {
    private static final long RAM = 64 * 1024;
    private static final long CODE = 0x1000;
    private static final Duration BOUND = Duration.ofSeconds(10);
    /** hlt. */
    private static final byte[] HALT = {(byte) 0xf4};
    /** jmp $: a guest that never exits on its own. */
    private static final byte[] SPIN = {(byte) 0xeb, (byte) 0xfe};
    /** in al, 0x80; out 0x81, al; hlt. */
    private static final byte[] ECHO = {(byte) 0xe4, (byte) 0x80, (byte) 0xe6, (byte) 0x81, (byte) 0xf4};
    /** out 0x80, al; jmp $. */
    private static final byte[] TELL_THEN_SPIN = {(byte) 0xe6, (byte) 0x80, (byte) 0xeb, (byte) 0xfe};

    @BeforeEach
    void requireKvm() {
        NativeRequirement.requireKvm(Kvm.unavailabilityCause());
    }

    /** Records what the vCPU thread hands over; port reads answer {@code in}. */
    private static final class Recorder implements VcpuThread.ExitHandler {
        final BlockingQueue<String> seen = new LinkedBlockingQueue<>();
        volatile int tid;
        volatile RuntimeException failOnPort;
        final long in;

        Recorder(long in) {
            this.in = in;
        }

        @Override
        public long portIo(VcpuExit.Io io) {
            tid = Posix.system().gettid();
            if (failOnPort != null) {
                throw failOnPort;
            }
            seen.add((io.in() ? "in 0x" : "out 0x") + Integer.toHexString(io.port())
                    + (io.in() ? "" : " 0x" + Long.toHexString(io.data())));
            return in;
        }

        @Override
        public long mmio(VcpuExit.Mmio mmio) {
            seen.add("mmio 0x" + Long.toHexString(mmio.address()));
            return -1L;
        }

        @Override
        public void halted(Registers registers) {
            seen.add("halted at 0x" + Long.toHexString(registers.rip()));
        }

        @Override
        public void failed(String reason, Optional<Registers> registers) {
            seen.add("failed: " + reason);
        }

        String next() throws InterruptedException {
            String s = seen.poll(BOUND.toMillis(), TimeUnit.MILLISECONDS);
            return s == null ? "nothing within " + BOUND : s;
        }
    }

    /** One VM with 64 KiB of RAM at 0 and one vCPU in real mode at {@link #CODE}, running {@code code}. */
    private static final class Guest implements AutoCloseable {
        final HostMemory ram = HostMemory.anonymous("vcpu-thread-ram", RAM);
        final Kvm kvm = Kvm.open();
        final KvmVm vm = kvm.createVm();
        final Recorder exits;
        final VcpuThread thread;

        Guest(byte[] code, long in) {
            ram.write(ram.base().checkedAdd(CODE), code);
            vm.setMemorySlot(0, AddressRange.of(0, RAM), ram.base(), false);
            KvmVcpu vcpu = vm.createVcpu(0);
            try (NativeBuffer sregs = vcpu.specialRegisters()) {
                sregs.putLong(KvmAbi.SREGS_CS + KvmAbi.SEG_BASE, 0)
                        .putShort(KvmAbi.SREGS_CS + KvmAbi.SEG_SELECTOR, (short) 0);
                vcpu.setSpecialRegisters(sregs);
            }
            long[] regs = new long[Registers.NAMES.length];
            regs[16] = CODE;
            regs[17] = 0x2;
            vcpu.setRegisters(new Registers(regs));
            exits = new Recorder(in);
            thread = VcpuThread.spawn(vcpu, exits, "vcpu-thread-test");
        }

        long interrupted() {
            return thread.exitCounts().getOrDefault("interrupted", 0L);
        }

        @Override
        public void close() {
            try {
                assertTrue(thread.awaitStopped(BOUND), "the vCPU thread ends once stopped");
                assertEquals(VcpuThread.State.STOPPED, thread.state());
                thread.kick(); // after the close: must not touch the unmapped kvm_run page
            } finally {
                vm.close();
                kvm.close();
                ram.close();
            }
        }
    }

    private static void await(BooleanSupplier condition, String what) throws InterruptedException {
        long deadline = System.nanoTime() + BOUND.toNanos();
        while (!condition.getAsBoolean()) {
            assertTrue(System.nanoTime() < deadline, what + " within " + BOUND);
            Thread.sleep(5);
        }
    }

    @Test
    void theThreadWaitsForStartThenRunsToHaltAndClosesItsVcpuWhenStopped() throws Exception {
        ProcessResources before = ProcessResources.snapshot();
        try (Guest guest = new Guest(HALT, 0)) {
            assertEquals(VcpuThread.State.CREATED, guest.thread.state());
            guest.thread.start();
            assertEquals("halted at 0x" + Long.toHexString(CODE + 1), guest.exits.next());
            assertEquals(VcpuThread.State.HALTED, guest.thread.state());
            assertEquals(VcpuThread.State.HALTED, guest.thread.pause().toCompletableFuture().join(),
                    "pausing a halted vCPU leaves it halted");
            assertEquals(VcpuThread.State.HALTED, guest.thread.resume());
            assertEquals(1L, guest.thread.exitCounts().get("hlt"));
        }
        assertTrue(ProcessResources.snapshot().nativeFdsOpenedSince(before).isEmpty(), "no KVM fd left");
    }

    @Test
    void aPortReadReturnsTheHandlersAnswerToTheGuest() throws Exception {
        try (Guest guest = new Guest(ECHO, 0x5a)) {
            guest.thread.start();
            assertEquals("in 0x80", guest.exits.next());
            assertEquals("out 0x81 0x5a", guest.exits.next(), "the guest wrote back what its IN read");
            assertEquals("halted at 0x" + Long.toHexString(CODE + ECHO.length), guest.exits.next());
            assertEquals(2L, guest.thread.exitCounts().get("io"));
        }
    }

    @Test
    void aKickMakesABusyGuestLeaveKvmRunAndGoBackInAndAPauseKeepsItOut() throws Exception {
        try (Guest guest = new Guest(SPIN, 0)) {
            guest.thread.start();
            await(() -> guest.thread.state() == VcpuThread.State.RUNNING, "running");
            long before = guest.interrupted();
            guest.thread.kick();
            // The spinning guest never exits on its own: only the kick can make KVM_RUN return.
            await(() -> guest.interrupted() > before, "the kick interrupts KVM_RUN");
            assertEquals(VcpuThread.State.RUNNING, guest.thread.state(), "a kick alone does not pause");
            assertEquals(VcpuThread.State.PAUSED, guest.thread.pause().toCompletableFuture()
                    .get(BOUND.toMillis(), TimeUnit.MILLISECONDS));
            assertEquals(VcpuThread.State.PAUSED, guest.thread.state());
            long paused = guest.interrupted();
            assertEquals(VcpuThread.State.RUNNING, guest.thread.resume());
            // A kick that lands before the woken thread has re-read the wanted state is absorbed by its re-entry
            // (the guest runs again, which is what a kick asks for), so kick until one interrupts KVM_RUN.
            await(() -> {
                guest.thread.kick();
                return guest.interrupted() > paused;
            }, "the resumed vCPU is in KVM_RUN again, where a kick reaches it");
        }
    }

    @Test
    void aSignalNobodyAskedForSendsTheVcpuStraightBackIntoTheGuest() throws Exception {
        try (Guest guest = new Guest(TELL_THEN_SPIN, 0)) {
            guest.thread.start();
            assertEquals("out 0x80 0x0", guest.exits.next());
            Posix posix = Posix.system();
            // A signal that lands while the thread is outside KVM_RUN does nothing, so signal until two have
            // interrupted it: the second can only be counted if the first sent the thread back into KVM_RUN.
            await(() -> {
                posix.tgkill(posix.getpid(), guest.exits.tid, KvmVcpu.KICK_SIGNAL);
                return guest.interrupted() >= 2;
            }, "two signals interrupt KVM_RUN");
            assertFalse(guest.thread.vcpu().exitRequested(), "a stray signal is not an exit request");
            assertEquals(VcpuThread.State.RUNNING, guest.thread.state());
        }
    }

    @Test
    void aPauseBeforeTheFirstRunLeavesTheVcpuCreatedAndResumeDoesNotStartIt() throws Exception {
        ProcessResources before = ProcessResources.snapshot();
        try (Guest guest = new Guest(HALT, 0)) {
            assertEquals(VcpuThread.State.CREATED, guest.thread.pause().toCompletableFuture().join());
            assertEquals(VcpuThread.State.CREATED, guest.thread.resume(), "resume does not start a vCPU");
            assertTrue(guest.thread.awaitStopped(BOUND));
            assertEquals(VcpuThread.State.STOPPED, guest.thread.pause().toCompletableFuture().join());
            guest.thread.start();
            assertEquals(VcpuThread.State.STOPPED, guest.thread.state(), "a stopped vCPU does not start");
            assertEquals(List.of(), List.copyOf(guest.exits.seen), "the guest never ran");
        }
        assertTrue(ProcessResources.snapshot().nativeFdsOpenedSince(before).isEmpty(), "no KVM fd left");
    }

    @Test
    void anExitHandlerThatThrowsFailsTheRunAndEndsTheThread() throws Exception {
        try (Guest guest = new Guest(ECHO, 0)) {
            guest.exits.failOnPort = new IllegalStateException("no device here");
            guest.thread.start();
            String failed = guest.exits.next();
            assertTrue(failed.startsWith("failed: the vCPU thread failed: ") && failed.contains("no device here"),
                    failed);
            assertEquals(VcpuThread.State.STOPPED, guest.thread.stopped().toCompletableFuture()
                    .get(BOUND.toMillis(), TimeUnit.MILLISECONDS), "the failed thread closed its vCPU and ended");
            assertFalse(guest.thread.stopRequested());
        }
    }

    @Test
    void stopEndsASpinningGuestAndAPendingPauseHearsStopped() throws Exception {
        ProcessResources before = ProcessResources.snapshot();
        try (Guest guest = new Guest(SPIN, 0)) {
            guest.thread.start();
            await(() -> guest.thread.state() == VcpuThread.State.RUNNING, "running");
            assertTrue(guest.thread.awaitStopped(BOUND), "stop does not wait for the guest");
            assertTrue(guest.thread.stopRequested());
            assertEquals(VcpuThread.State.STOPPED, guest.thread.pause().toCompletableFuture().join());
        }
        assertTrue(ProcessResources.snapshot().nativeFdsOpenedSince(before).isEmpty(), "no KVM fd left");
    }
}
