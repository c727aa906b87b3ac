package io.actovisor.kernel.kvm;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.LongAdder;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One vCPU as Firecracker runs it: a thread of its own that owns the {@link KvmVcpu} (closing it when the thread
 * ends) and loops in {@code KVM_RUN}, and the control through which its owner starts, pauses, resumes, kicks and
 * stops it. What an exit means is not this class's business: port I/O, MMIO, HLT and the exits that end the run go
 * to an {@link ExitHandler}, called on the vCPU thread. No method blocks on the vCPU thread except
 * {@link #awaitStopped}.
 *
 * <p><b>Kick.</b> {@link #kick()} sets {@code immediate_exit} in {@code struct kvm_run} and then sends the vCPU
 * thread {@link KvmVcpu#KICK_SIGNAL} (a real-time signal whose handler does nothing and is installed without
 * {@code SA_RESTART}), so a thread inside {@code KVM_RUN} returns {@code EINTR}, and a thread about to enter it
 * returns at once because {@code immediate_exit} is already set. The thread clears {@code immediate_exit} only
 * under this class's lock, after it has read the wanted state, so a kick that arrives later is never lost. A signal
 * nobody asked for ({@code immediate_exit} clear) sends the vCPU straight back into the guest.
 *
 * <p><b>Why a lock.</b> The vCPU is a thread, not an actor: it has no mailbox, and its owner must reach it while it
 * sits in {@code KVM_RUN}. The one lock, never held across {@code KVM_RUN} or an exit handler, guards two things
 * atomics cannot: the kvm_run page against the thread's close (a kick checks "not closed" and then writes
 * {@code immediate_exit} and signals the thread id; with a flag alone the close, which unmaps that page and frees
 * the thread id, can fall between the check and the write, a use after unmap; excluding it needs mutual exclusion,
 * and a count of kicks in flight that the close spins on would be a lock written by hand), and the thread's read of
 * the wanted state together with its clear of {@code immediate_exit}, so a pause or stop cannot slip in between and
 * be lost. It is also what the paused thread waits on. The lock lives here, in {@code kernel}, so that the actors
 * that dispatch exits to devices hold none.
 *
 * <p><b>Ends.</b> HLT, SHUTDOWN, INTERNAL_ERROR, FAIL_ENTRY and unknown exits end the run; the handler hears
 * {@link ExitHandler#halted} or {@link ExitHandler#failed} and the thread waits for {@link #stop()}. A failing
 * {@code KVM_RUN} or a handler that throws ends the thread itself: the handler hears {@link ExitHandler#failed},
 * then the thread closes the vCPU and ends.
 */
public final class VcpuThread {
    private static final Logger LOG = LoggerFactory.getLogger(VcpuThread.class);

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

    /**
     * What the vCPU thread does with the exits it cannot handle itself. Every method is called on the vCPU thread,
     * outside the lock; a method that throws ends the thread as a failure.
     */
    public interface ExitHandler {
        /** A port access: returns the value an {@code IN} reads (ignored for {@code OUT}). */
        long portIo(VcpuExit.Io io);

        /** An MMIO access: returns the value a read reads (ignored for a write). */
        long mmio(VcpuExit.Mmio mmio);

        /** The guest executed HLT; the vCPU is {@link State#HALTED} already. */
        void halted(Registers registers);

        /**
         * The guest cannot continue: {@code reason} names the exit (SHUTDOWN, INTERNAL_ERROR, ...) or the thread's
         * failure; the vCPU is {@link State#FAILED} already.
         */
        void failed(String reason, Optional<Registers> registers);
    }

    private final KvmVcpu vcpu;
    private final ExitHandler exits;
    private final Thread thread;
    private final ConcurrentHashMap<String, LongAdder> exitCounts = new ConcurrentHashMap<>();
    private final CompletableFuture<State> stopped = new CompletableFuture<>();

    // Guarded by lock: what the owner wants, what the thread is doing, and who waits for it to pause.
    private final Object lock = new Object();
    private State wanted = State.CREATED;
    private State state = State.CREATED;
    private boolean stopRequested;
    private boolean closed;
    private final List<CompletableFuture<State>> pauseWaiters = new ArrayList<>();

    private VcpuThread(KvmVcpu vcpu, ExitHandler exits, String threadName) {
        this.vcpu = vcpu;
        this.exits = exits;
        this.thread = new Thread(this::loop, threadName);
        thread.setDaemon(true);
    }

    /**
     * Take ownership of {@code vcpu} (set up already: registers, CPUID) and start its thread, named
     * {@code threadName}, which waits for {@link #start()} before it enters the guest. If the thread cannot be
     * started, or an argument is missing, the vCPU is closed.
     */
    public static VcpuThread spawn(KvmVcpu vcpu, ExitHandler exits, String threadName) {
        Objects.requireNonNull(vcpu, "vcpu");
        try {
            VcpuThread t = new VcpuThread(vcpu, Objects.requireNonNull(exits, "exits"),
                    Objects.requireNonNull(threadName, "threadName"));
            t.thread.start();
            return t;
        } catch (RuntimeException | Error e) {
            vcpu.close();
            throw e;
        }
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

    /** Exits so far by reason ({@code io}, {@code mmio}, {@code hlt}, {@code interrupted}, ...); any thread. */
    public Map<String, Long> exitCounts() {
        Map<String, Long> out = new TreeMap<>();
        exitCounts.forEach((reason, n) -> out.put(reason, n.sum()));
        return out;
    }

    /** What the vCPU is doing now. */
    public State state() {
        synchronized (lock) {
            return state;
        }
    }

    /** Whether {@link #stop()} was called. */
    public boolean stopRequested() {
        synchronized (lock) {
            return stopRequested;
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
            completePauseWaitersLocked(State.RUNNING);
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
     * End the vCPU: kick it out of the guest and let its thread close the vCPU and end once its current exit
     * handler (if any) returns. Idempotent; {@link #stopped()} completes when the thread has ended.
     */
    public void stop() {
        synchronized (lock) {
            stopRequested = true;
            kickLocked();
            lock.notifyAll();
        }
    }

    /** Completes with {@link State#STOPPED} once the vCPU thread has ended and closed the vCPU. */
    public CompletionStage<State> stopped() {
        return stopped;
    }

    /**
     * {@link #stop()} and wait at most {@code timeout} for the thread to end; returns whether it did. A vCPU stops
     * within microseconds of the kick unless an exit handler holds it.
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
                completePauseWaitersLocked(State.STOPPED);
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
                    completePauseWaitersLocked(State.PAUSED);
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
            exitCounts.computeIfAbsent(exit.getClass().getSimpleName().toLowerCase(Locale.ROOT),
                    r -> new LongAdder()).increment();
            if (exit instanceof VcpuExit.Io portIo) {
                long value = exits.portIo(portIo);
                if (portIo.in()) {
                    vcpu.completeIn(portIo, value);
                }
            } else if (exit instanceof VcpuExit.Mmio mmio) {
                long value = exits.mmio(mmio);
                if (!mmio.write()) {
                    vcpu.completeMmioRead(mmio, value);
                }
            } else if (exit instanceof VcpuExit.Interrupted) {
                if (vcpu.exitRequested()) {
                    return;
                }
                // A stray signal: nobody asked the vCPU to stop, so it goes back into the guest.
            } else if (exit instanceof VcpuExit.Hlt hlt) {
                LOG.info("vCPU {} halted at rip 0x{}", vcpu.id(), Long.toHexString(hlt.registers().rip()));
                synchronized (lock) {
                    state = State.HALTED;
                    completePauseWaitersLocked(State.HALTED);
                }
                exits.halted(hlt.registers());
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
            completePauseWaitersLocked(State.FAILED);
        }
        try {
            exits.failed(reason, registers);
        } catch (RuntimeException e) {
            LOG.error("vCPU {}: its exit handler failed on the failure {}", vcpu.id(), reason, e);
        }
    }

    private void completePauseWaitersLocked(State now) {
        pauseWaiters.forEach(w -> w.complete(now));
        pauseWaiters.clear();
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
