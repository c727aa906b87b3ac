package io.actovisor.actors.kvm;

import io.actovisor.actors.device.DeviceIo;
import io.actovisor.actors.device.DeviceTimeouts;
import io.actovisor.kernel.kvm.KvmVcpu;
import io.actovisor.kernel.kvm.Registers;
import io.actovisor.kernel.kvm.VcpuExit;
import io.actovisor.kernel.kvm.VcpuThread;
import java.time.Duration;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.LongAdder;
import java.util.function.Supplier;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Scheduler;
import org.apache.pekko.actor.typed.javadsl.AskPattern;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One vCPU: a {@link VcpuThread} (in {@code kernel}: the thread that owns the {@link KvmVcpu} and loops in
 * {@code KVM_RUN}, with its start, pause, resume, kick and stop) and the dispatch of its exits to device actors.
 * The VM actor owns the handle. No method of the handle blocks on the vCPU thread except {@link #awaitStopped}.
 *
 * <p><b>Device exits.</b> A port I/O or MMIO exit is sent to the device that owns the address ({@link IoMap},
 * {@link DeviceIo}) and the thread waits for the answer, at most {@link DeviceTimeouts#vcpuOnDevice()}, which is
 * longer than any wait the device itself makes. A device that fails, does not answer in time, or is interrupted by
 * {@link #stop()} is a device error: a read returns all ones, a write is dropped, the error is logged and counted
 * ({@link ExitCounters#deviceErrors()}), and the guest goes on. Accesses no device claims are treated the same way
 * and counted as unclaimed.
 *
 * <p><b>No lock here.</b> The thread control, and with it the one lock a vCPU needs (kick against the close that
 * unmaps {@code kvm_run}; the wanted state read together with the clear of {@code immediate_exit}), lives in
 * {@link VcpuThread}; its class doc says why. The handle's own state is atomic: the device answer the thread waits
 * for and a stop flag, published in opposite orders by the thread and {@link #stop()} so that one of them always
 * sees the other and a stop never leaves the thread waiting on a device.
 *
 * <p><b>Events.</b> HLT, SHUTDOWN, INTERNAL_ERROR, FAIL_ENTRY and unknown exits end the run; the observer hears
 * {@link Halted} or {@link Failed} and the thread waits for {@link #stop()}. A failing {@code KVM_RUN} is a
 * {@link Failed} too, after which the thread closes the vCPU and ends.
 */
public final class VcpuHandle {
    private static final Logger LOG = LoggerFactory.getLogger(VcpuHandle.class);

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
        private final Supplier<Map<String, Long>> exits;
        private final LongAdder unclaimed = new LongAdder();
        private final LongAdder deviceErrors = new LongAdder();

        private ExitCounters(Supplier<Map<String, Long>> exits) {
            this.exits = exits;
        }

        /** Exits so far by reason ({@code io}, {@code mmio}, {@code hlt}, {@code interrupted}, ...). */
        public Map<String, Long> snapshot() {
            return exits.get();
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

    private final int id;
    private final IoMap io;
    private final ActorRef<Event> observer;
    private final Scheduler scheduler;
    private final Duration deviceTimeout;
    private final ExitCounters counters;
    private final VcpuThread thread;
    // Set by stop() before it reads pendingAccess; the vCPU thread sets pendingAccess before it reads this.
    private volatile boolean stopping;
    // The device answer the thread waits for, so that stop() can end the wait.
    private volatile CompletableFuture<DeviceIo.Result> pendingAccess;

    private VcpuHandle(KvmVcpu vcpu, IoMap io, ActorRef<Event> observer, Scheduler scheduler,
            DeviceTimeouts timeouts, String threadName) {
        this.id = vcpu.id();
        this.io = io;
        this.observer = observer;
        this.scheduler = scheduler;
        this.deviceTimeout = timeouts.vcpuOnDevice();
        // The thread calls Dispatch only after start(), which the owner calls once this constructor has returned.
        this.thread = VcpuThread.spawn(vcpu, new Dispatch(), threadName);
        this.counters = new ExitCounters(thread::exitCounts);
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
        try {
            return new VcpuHandle(vcpu, Objects.requireNonNull(io, "io"), Objects.requireNonNull(observer,
                    "observer"), Objects.requireNonNull(scheduler, "scheduler"), Objects.requireNonNull(timeouts,
                            "timeouts"), "vcpu-" + name);
        } catch (RuntimeException | Error e) {
            vcpu.close();
            throw e;
        }
    }

    /** The vCPU's index in its VM. */
    public int id() {
        return id;
    }

    /**
     * The vCPU itself, for diagnostics while it is paused (registers); its thread owns it and closes it when it
     * ends.
     */
    public KvmVcpu vcpu() {
        return thread.vcpu();
    }

    public ExitCounters counters() {
        return counters;
    }

    /** What the vCPU is doing now. */
    public VcpuThread.State state() {
        return thread.state();
    }

    /** Enter the guest for the first time; ignored unless the vCPU is still {@link VcpuThread.State#CREATED}. */
    public void start() {
        thread.start();
    }

    /** As {@link VcpuThread#pause()}: the state once the thread has left {@code KVM_RUN}, or at once if not running. */
    public CompletionStage<VcpuThread.State> pause() {
        return thread.pause();
    }

    /** As {@link #pause()}, telling {@code replyTo} the state. */
    public void pause(ActorRef<VcpuThread.State> replyTo) {
        pause().thenAccept(replyTo::tell);
    }

    /** Enter the guest again after {@link #pause()}; returns the state after the call (unchanged unless paused). */
    public VcpuThread.State resume() {
        return thread.resume();
    }

    /**
     * Make a running guest exit once, as an interrupt request would; the vCPU re-enters at once unless a pause or
     * stop is pending.
     */
    public void kick() {
        thread.kick();
    }

    /**
     * End the vCPU: kick it out of the guest, abandon a device access it waits for (a device error), and let its
     * thread close the vCPU and end. Idempotent; {@link #stopped()} completes when the thread has ended.
     */
    public void stop() {
        stopping = true;
        thread.stop();
        CompletableFuture<DeviceIo.Result> access = pendingAccess;
        if (access != null) {
            access.cancel(false);
        }
    }

    /** Completes with {@link VcpuThread.State#STOPPED} once the vCPU thread has ended and closed the vCPU. */
    public CompletionStage<VcpuThread.State> stopped() {
        return thread.stopped();
    }

    /**
     * {@link #stop()} and wait at most {@code timeout} for the thread to end; returns whether it did. A vCPU stops
     * within microseconds of the kick, since nothing it waits for outlives {@link #stop()}.
     */
    public boolean awaitStopped(Duration timeout) {
        stop();
        return thread.awaitStopped(timeout);
    }

    /** The exits the vCPU thread hands over: device accesses become {@link DeviceIo} asks, ends become events. */
    private final class Dispatch implements VcpuThread.ExitHandler {
        @Override
        public long portIo(VcpuExit.Io portIo) {
            return access(DeviceIo.Space.PIO, portIo.port(), portIo.size(), !portIo.in(), portIo.data());
        }

        @Override
        public long mmio(VcpuExit.Mmio mmio) {
            return access(DeviceIo.Space.MMIO, mmio.address(), mmio.size(), mmio.write(), mmio.data());
        }

        @Override
        public void halted(Registers registers) {
            observer.tell(new Halted(id, registers));
        }

        @Override
        public void failed(String reason, Optional<Registers> registers) {
            observer.tell(new Failed(id, reason, registers));
        }
    }

    /**
     * Ask the device at {@code address} and wait, at most {@link #deviceTimeout}: the vCPU cannot go on before a read
     * has its value, as a CPU's bus cannot. No device there, or any failure, is what the guest's bus would give: all
     * ones to a read, a dropped write (counted as unclaimed or as a device error).
     */
    private long access(DeviceIo.Space space, long address, int size, boolean write, long data) {
        Optional<IoMap.Entry> device = io.find(space, address);
        if (device.isEmpty()) {
            counters.unclaimed.increment();
            LOG.debug("vCPU {}: unclaimed {} 0x{}", id, space == DeviceIo.Space.PIO ? "port" : "MMIO",
                    Long.toHexString(address));
            return -1L;
        }
        IoMap.Entry e = device.get();
        long offset = address - e.range().base();
        CompletableFuture<DeviceIo.Result> answer = AskPattern.<DeviceIo.Command, DeviceIo.Result>ask(e.device(),
                replyTo -> write ? new DeviceIo.Write(space, address, offset, size, data, replyTo)
                        : new DeviceIo.Read(space, address, offset, size, replyTo),
                deviceTimeout, scheduler).toCompletableFuture();
        pendingAccess = answer;
        String failure;
        try {
            if (stopping) {
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
        LOG.warn("vCPU {}: device {} {} ({} of {} bytes at 0x{}); the guest {}", id, e.name(), failure,
                write ? "a write" : "a read", size, Long.toHexString(address),
                write ? "write is dropped" : "reads all ones");
        return -1L;
    }
}
