package io.actovisor.actors.kvm;

import io.actovisor.actors.device.DeviceIo;
import io.actovisor.actors.device.DeviceTimeouts;
import io.actovisor.kernel.kvm.KvmVcpu;
import io.actovisor.kernel.kvm.Registers;
import io.actovisor.kernel.kvm.VcpuExit;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.TreeMap;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.LongAdder;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Scheduler;
import org.apache.pekko.actor.typed.javadsl.AskPattern;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One vCPU as Firecracker runs it: a thread of its own that owns the {@link KvmVcpu} (closing it when the thread
 * ends) and loops in {@code KVM_RUN}, and this handle, through which its owner (the VM actor) starts, pauses,
 * resumes, kicks and stops it. No method of the handle blocks on the vCPU thread except {@link #awaitStopped}.
 *
 * <p><b>Kick.</b> {@link #kick()} sets {@code immediate_exit} in {@code struct kvm_run} and then sends the vCPU
 * thread {@link KvmVcpu#KICK_SIGNAL} (a real-time signal whose handler does nothing and is installed without
 * {@code SA_RESTART}), so a thread inside {@code KVM_RUN} returns {@code EINTR}, and a thread about to enter it
 * returns at once because {@code immediate_exit} is already set. The thread clears {@code immediate_exit} only
 * under the handle's lock, after it has read the wanted state, so a kick that arrives later is never lost.
 *
 * <p><b>Device exits.</b> A port I/O or MMIO exit is sent to the device that owns the address ({@link IoMap},
 * {@link DeviceIo}) and the thread waits for the answer, at most {@link DeviceTimeouts#vcpuOnDevice()}, which is
 * longer than any wait the device itself makes. A device that fails, does not answer in time, or is interrupted by
 * {@link #stop()} is a device error: a read returns all ones, a write is dropped, the error is logged and counted
 * ({@link ExitCounters#deviceErrors()}), and the guest goes on. Accesses no device claims are treated the same way
 * and counted as unclaimed.
 *
 * <p><b>Why a lock here, where actors use mailboxes.</b> The vCPU is a thread, not an actor: it has no mailbox, and
 * its owner must reach it while it sits in {@code KVM_RUN}. The handle's one lock, never held across
 * {@code KVM_RUN} or a device wait, guards two things atomics cannot: the kvm_run page against the thread's close
 * (a kick checks "not closed" and then writes {@code immediate_exit} and signals the thread id; with a flag alone the
 * close, which unmaps that page and frees the thread id, can fall between the check and the write, a use after
 * unmap; excluding it needs mutual exclusion, and a count of kicks in flight that the close spins on would be a lock
 * written by hand), and the thread's read of the wanted state together with its clear of {@code immediate_exit}, so
 * a pause or stop cannot slip in between and be lost. It is also what the paused thread waits on.
 *
 * <p><b>Events.</b> HLT, SHUTDOWN, INTERNAL_ERROR, FAIL_ENTRY, unknown exits and a failing {@code KVM_RUN} end the
 * run; the observer hears {@link Halted} or {@link Failed} and the thread waits for {@link #stop()}.
 */
public final class VcpuHandle {
    private static final Logger LOG = LoggerFactory.getLogger(VcpuHandle.class);

    /** A vCPU's lifecycle. */
    public enum State {
        /** The thread exists and has not entered the guest. */
        CREATED,
        RUNNING,
        PAUSED,
        HALTED,
        FAILED,
        /** The thread has ended and the vCPU fd is closed. */
        STOPPED
    }

    /** What the vCPU tells its observer. */
    public sealed interface Event permits Halted, Failed {
        int vcpu();
    }

    /** The guest executed HLT. */
    public record Halted(int vcpu, Registers registers) implements Event {
    }

    /** The guest cannot continue: {@code reason} names the exit (SHUTDOWN, INTERNAL_ERROR, ...). */
    public record Failed(int vcpu, String reason, Optional<Registers> registers) implements Event {
    }

    /**
     * Exit counts, readable from any thread while the vCPU runs (its thread is busy in the guest). Atomic counters,
     * no locks.
     */
    public static final class ExitCounters {
        private final ConcurrentHashMap<String, LongAdder> exits = new ConcurrentHashMap<>();
        private final LongAdder unclaimed = new LongAdder();
        private final LongAdder deviceErrors = new LongAdder();

        void count(String reason) {
            exits.computeIfAbsent(reason, r -> new LongAdder()).increment();
        }

        /** Exits so far by reason ({@code io}, {@code mmio}, {@code hlt}, {@code interrupted}, ...). */
        public Map<String, Long> snapshot() {
            Map<String, Long> out = new TreeMap<>();
            exits.forEach((reason, n) -> out.put(reason, n.sum()));
            return out;
        }

        /** Port and MMIO accesses no device claimed. */
        public long unclaimed() {
            return unclaimed.sum();
        }

        /** Accesses whose device failed, did not answer in time, or was abandoned because the vCPU stopped. */
        public long deviceErrors() {
            return deviceErrors.sum();
        }
    }

    private final KvmVcpu vcpu;
    private final IoMap io;
    private final ActorRef<Event> observer;
    private final Scheduler scheduler;
    private final Duration deviceTimeout;
    private final ExitCounters counters = new ExitCounters();
    private final Thread thread;
    private final CompletableFuture<State> stopped = new CompletableFuture<>();

    // Guarded by lock: what the owner wants, what the thread is doing, and who waits for it to pause.
    private final Object lock = new Object();
    private State wanted = State.CREATED;
    private State state = State.CREATED;
    private boolean stopRequested;
    private boolean closed;
    private final List<CompletableFuture<State>> pauseWaiters = new ArrayList<>();
    // The device answer the thread waits for, so that stop() can end the wait.
    private volatile CompletableFuture<DeviceIo.Result> pendingAccess;

    private VcpuHandle(KvmVcpu vcpu, IoMap io, ActorRef<Event> observer, Scheduler scheduler,
            DeviceTimeouts timeouts, String threadName) {
        this.vcpu = vcpu;
        this.io = io;
        this.observer = observer;
        this.scheduler = scheduler;
        this.deviceTimeout = timeouts.vcpuOnDevice();
        this.thread = new Thread(this::loop, threadName);
        thread.setDaemon(true);
    }

    /**
     * Take ownership of {@code vcpu} (set up already: registers, CPUID) and start its thread, which waits for
     * {@link #start()} before it enters the guest. If the thread cannot be started the vCPU is closed.
     *
     * @param name names the thread ({@code vcpu-<name>})
     */
    public static VcpuHandle spawn(KvmVcpu vcpu, IoMap io, ActorRef<Event> observer, Scheduler scheduler,
            DeviceTimeouts timeouts, String name) {
        Objects.requireNonNull(vcpu, "vcpu");
        VcpuHandle handle;
        try {
            handle = new VcpuHandle(vcpu, Objects.requireNonNull(io, "io"), Objects.requireNonNull(observer,
                    "observer"), Objects.requireNonNull(scheduler, "scheduler"), Objects.requireNonNull(timeouts,
                            "timeouts"), "vcpu-" + name);
            handle.thread.start();
        } catch (RuntimeException | Error e) {
            vcpu.close();
            throw e;
        }
        return handle;
    }

    /** The vCPU's index in its VM. */
    public int id() {
        return vcpu.id();
    }

    /**
     * The vCPU itself, for diagnostics while it is paused (registers); its thread owns it and closes it when it
     * ends.
     */
    public KvmVcpu vcpu() {
        return vcpu;
    }

    public ExitCounters counters() {
        return counters;
    }

    /** What the vCPU is doing now. */
    public State state() {
        synchronized (lock) {
            return state;
        }
    }

    /** Enter the guest for the first time; ignored unless the vCPU is still {@link State#CREATED}. */
    public void start() {
        synchronized (lock) {
            if (state == State.CREATED && !stopRequested) {
                wanted = State.RUNNING;
                lock.notifyAll();
            }
        }
    }

    /**
     * Make the guest exit and keep it out. The answer is the state once the thread has left {@code KVM_RUN}
     * ({@link State#PAUSED}), or at once the state of a vCPU that is not running (created, halted, failed,
     * stopped), which pausing leaves as it is.
     */
    public CompletionStage<State> pause() {
        CompletableFuture<State> answer = new CompletableFuture<>();
        synchronized (lock) {
            if (state != State.RUNNING || stopRequested) {
                answer.complete(state);
                return answer;
            }
            wanted = State.PAUSED;
            pauseWaiters.add(answer);
            kickLocked();
        }
        return answer;
    }

    /** As {@link #pause()}, telling {@code replyTo} the state. */
    public void pause(ActorRef<State> replyTo) {
        pause().thenAccept(replyTo::tell);
    }

    /** Enter the guest again after {@link #pause()}; returns the state after the call (unchanged unless paused). */
    public State resume() {
        synchronized (lock) {
            if (stopRequested || wanted != State.PAUSED) {
                return state;
            }
            wanted = State.RUNNING;
            if (state == State.PAUSED) {
                state = State.RUNNING;
            }
            // A pause the thread had not reached yet is overtaken: its waiters learn the vCPU runs.
            pauseWaiters.forEach(w -> w.complete(State.RUNNING));
            pauseWaiters.clear();
            lock.notifyAll();
            return state;
        }
    }

    /**
     * Make a running guest exit once, as an interrupt request would; the vCPU re-enters at once unless a pause or
     * stop is pending.
     */
    public void kick() {
        synchronized (lock) {
            kickLocked();
        }
    }

    /**
     * Kick under the lock, so that it never races the thread's close: after the close the kvm_run page is unmapped
     * and the thread id may belong to another thread.
     */
    private void kickLocked() {
        if (!closed) {
            vcpu.requestExit();
        }
    }

    /**
     * End the vCPU: kick it out of the guest, abandon a device access it waits for (a device error), and let its
     * thread close the vCPU and end. Idempotent; {@link #stopped()} completes when the thread has ended.
     */
    public void stop() {
        synchronized (lock) {
            stopRequested = true;
            kickLocked();
            lock.notifyAll();
        }
        CompletableFuture<DeviceIo.Result> access = pendingAccess;
        if (access != null) {
            access.cancel(false);
        }
    }

    /** Completes with {@link State#STOPPED} once the vCPU thread has ended and closed the vCPU. */
    public CompletionStage<State> stopped() {
        return stopped;
    }

    /**
     * {@link #stop()} and wait at most {@code timeout} for the thread to end; returns whether it did. A vCPU stops
     * within microseconds of the kick, since nothing it waits for outlives {@link #stop()}.
     */
    public boolean awaitStopped(Duration timeout) {
        stop();
        try {
            stopped.get(timeout.toNanos(), TimeUnit.NANOSECONDS);
            return true;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return false;
        } catch (ExecutionException | TimeoutException e) {
            return false;
        }
    }

    private void loop() {
        try {
            while (awaitRunning()) {
                runUntilExitRequested();
            }
        } catch (RuntimeException | Error e) {
            LOG.error("vCPU {}: its thread failed", vcpu.id(), e);
            fail("the vCPU thread failed: " + e, Optional.empty());
        } finally {
            synchronized (lock) {
                closed = true;
                vcpu.close();
                state = State.STOPPED;
                pauseWaiters.forEach(w -> w.complete(State.STOPPED));
                pauseWaiters.clear();
            }
            stopped.complete(State.STOPPED);
        }
    }

    /**
     * Park until the owner wants the guest running; false once a stop is requested. Clears {@code immediate_exit}
     * under the lock: a pause or stop after this point sets it again after the clear.
     */
    private boolean awaitRunning() {
        synchronized (lock) {
            while (true) {
                if (stopRequested) {
                    return false;
                }
                boolean ended = state == State.HALTED || state == State.FAILED;
                if (!ended && wanted == State.PAUSED && state == State.RUNNING) {
                    state = State.PAUSED;
                    pauseWaiters.forEach(w -> w.complete(State.PAUSED));
                    pauseWaiters.clear();
                }
                if (!ended && wanted == State.RUNNING) {
                    state = State.RUNNING;
                    vcpu.clearExitRequest();
                    return true;
                }
                try {
                    lock.wait();
                } catch (InterruptedException e) {
                    // Only stop() ends this thread; an interrupt from elsewhere is not a reason to.
                    Thread.interrupted();
                }
            }
        }
    }

    private void runUntilExitRequested() {
        while (true) {
            VcpuExit exit = vcpu.run();
            counters.count(exit.getClass().getSimpleName().toLowerCase(Locale.ROOT));
            if (exit instanceof VcpuExit.Io portIo) {
                handlePortIo(portIo);
            } else if (exit instanceof VcpuExit.Mmio mmio) {
                handleMmio(mmio);
            } else if (exit instanceof VcpuExit.Interrupted) {
                if (vcpu.exitRequested()) {
                    return;
                }
                // A stray signal: nobody asked the vCPU to stop, so it goes back into the guest.
            } else if (exit instanceof VcpuExit.Hlt hlt) {
                LOG.info("vCPU {} halted at rip 0x{}", vcpu.id(), Long.toHexString(hlt.registers().rip()));
                synchronized (lock) {
                    state = State.HALTED;
                    pauseWaiters.forEach(w -> w.complete(State.HALTED));
                    pauseWaiters.clear();
                }
                observer.tell(new Halted(vcpu.id(), hlt.registers()));
                return;
            } else {
                String reason = describe(exit);
                LOG.error("vCPU {} stopped: {}", vcpu.id(), reason);
                fail(reason, registersOf(exit));
                return;
            }
        }
    }

    private void fail(String reason, Optional<Registers> registers) {
        synchronized (lock) {
            state = State.FAILED;
            pauseWaiters.forEach(w -> w.complete(State.FAILED));
            pauseWaiters.clear();
        }
        observer.tell(new Failed(vcpu.id(), reason, registers));
    }

    private void handlePortIo(VcpuExit.Io portIo) {
        Optional<IoMap.Entry> device = io.find(DeviceIo.Space.PIO, portIo.port());
        if (device.isEmpty()) {
            counters.unclaimed.increment();
            LOG.debug("vCPU {}: unclaimed port 0x{}", vcpu.id(), Integer.toHexString(portIo.port()));
            if (portIo.in()) {
                vcpu.completeIn(portIo, -1L);
            }
            return;
        }
        IoMap.Entry e = device.get();
        long offset = portIo.port() - e.range().base();
        long value = access(e, DeviceIo.Space.PIO, portIo.port(), offset, portIo.size(), !portIo.in(),
                portIo.data());
        if (portIo.in()) {
            vcpu.completeIn(portIo, value);
        }
    }

    private void handleMmio(VcpuExit.Mmio mmio) {
        Optional<IoMap.Entry> device = io.find(DeviceIo.Space.MMIO, mmio.address());
        if (device.isEmpty()) {
            counters.unclaimed.increment();
            LOG.debug("vCPU {}: unclaimed MMIO 0x{}", vcpu.id(), Long.toHexString(mmio.address()));
            if (!mmio.write()) {
                vcpu.completeMmioRead(mmio, -1L);
            }
            return;
        }
        IoMap.Entry e = device.get();
        long offset = mmio.address() - e.range().base();
        long value = access(e, DeviceIo.Space.MMIO, mmio.address(), offset, mmio.size(), mmio.write(), mmio.data());
        if (!mmio.write()) {
            vcpu.completeMmioRead(mmio, value);
        }
    }

    /**
     * Ask the device and wait, at most {@link #deviceTimeout}: the vCPU cannot go on before a read has its value,
     * as a CPU's bus cannot. Any failure is a device error: all ones to a read, a dropped write.
     */
    private long access(IoMap.Entry e, DeviceIo.Space space, long address, long offset, int size, boolean write,
            long data) {
        CompletableFuture<DeviceIo.Result> answer = AskPattern.<DeviceIo.Command, DeviceIo.Result>ask(e.device(),
                replyTo -> write ? new DeviceIo.Write(space, address, offset, size, data, replyTo)
                        : new DeviceIo.Read(space, address, offset, size, replyTo),
                deviceTimeout, scheduler).toCompletableFuture();
        pendingAccess = answer;
        String failure;
        try {
            if (stopRequested()) {
                answer.cancel(false);
            }
            // The ask ends itself after deviceTimeout; the bound here only guards against a scheduler that stalls.
            DeviceIo.Result result = answer.get(deviceTimeout.toMillis() + 1000, TimeUnit.MILLISECONDS);
            if (result instanceof DeviceIo.Completed done) {
                return done.value();
            }
            failure = "failed: " + ((DeviceIo.Failed) result).reason();
        } catch (CancellationException ex) {
            failure = "was abandoned: the vCPU is stopping";
        } catch (InterruptedException ex) {
            Thread.interrupted();
            failure = "was interrupted";
        } catch (ExecutionException | TimeoutException ex) {
            failure = "did not answer within " + deviceTimeout.toMillis() + " ms";
        } finally {
            pendingAccess = null;
        }
        counters.deviceErrors.increment();
        LOG.warn("vCPU {}: device {} {} ({} of {} bytes at 0x{}); the guest {}", vcpu.id(), e.name(), failure,
                write ? "a write" : "a read", size, Long.toHexString(address),
                write ? "write is dropped" : "reads all ones");
        return -1L;
    }

    private boolean stopRequested() {
        synchronized (lock) {
            return stopRequested;
        }
    }

    private static String describe(VcpuExit exit) {
        if (exit instanceof VcpuExit.Shutdown s) {
            return "SHUTDOWN (triple fault or reset) at " + s.registers();
        } else if (exit instanceof VcpuExit.InternalError e) {
            return "INTERNAL_ERROR suberror " + e.suberror() + " at " + e.registers();
        } else if (exit instanceof VcpuExit.FailEntry f) {
            return "FAIL_ENTRY hardware reason 0x" + Long.toHexString(f.reason()) + " at " + f.registers();
        } else if (exit instanceof VcpuExit.Unknown u) {
            return "unhandled exit reason " + u.reason() + " at " + u.registers();
        }
        return exit.toString();
    }

    private static Optional<Registers> registersOf(VcpuExit exit) {
        if (exit instanceof VcpuExit.Shutdown s) {
            return Optional.of(s.registers());
        } else if (exit instanceof VcpuExit.InternalError e) {
            return Optional.of(e.registers());
        } else if (exit instanceof VcpuExit.FailEntry f) {
            return Optional.of(f.registers());
        } else if (exit instanceof VcpuExit.Unknown u) {
            return Optional.of(u.registers());
        }
        return Optional.empty();
    }
}
