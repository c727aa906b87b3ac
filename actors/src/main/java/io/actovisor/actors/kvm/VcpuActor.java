package io.actovisor.actors.kvm;

import io.actovisor.actors.device.DeviceIo;
import io.actovisor.devices.kvm.KvmVcpu;
import io.actovisor.devices.kvm.Registers;
import io.actovisor.devices.kvm.VcpuExit;
import java.time.Duration;
import java.util.Map;
import java.util.Optional;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.DispatcherSelector;
import org.apache.pekko.actor.typed.PostStop;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.AskPattern;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;

/**
 * One vCPU. It owns its {@link KvmVcpu} (closed in {@code PostStop}) and runs {@code KVM_RUN} on the
 * {@link #DISPATCHER} (one thread per vCPU, {@code actovisor.dispatchers.vcpu}): a {@code Run} message enters the
 * guest and handles port I/O and MMIO exits in place, asking the device that owns the address (a vCPU waits for
 * the device's answer before re-entering the guest, as hardware does). Accesses nobody claims read all ones and are
 * dropped when written, and counted.
 *
 * <p>While the guest runs, this actor's thread is inside {@code KVM_RUN} and cannot read its mailbox, so pause and
 * stop go through a {@link Control}, which first makes {@code KVM_RUN} return ({@code immediate_exit} and a signal
 * to the vCPU thread) and then sends the message. HLT, SHUTDOWN, INTERNAL_ERROR, FAIL_ENTRY and unknown exits end
 * the run and are reported to the observer with the registers.
 */
public final class VcpuActor extends AbstractBehavior<VcpuActor.Command> {
    /** The dispatcher vCPUs run on. */
    public static final DispatcherSelector DISPATCHER = DispatcherSelector.fromConfig("actovisor.dispatchers.vcpu");
    private static final Duration DEVICE_TIMEOUT = Duration.ofSeconds(5);

    /** What a vCPU accepts; use {@link Control} for pause, resume and stop. */
    public interface Command {
    }

    /** Enter (or re-enter) the guest. */
    public enum Run implements Command {
        INSTANCE
    }

    private record Pause(ActorRef<State> replyTo) implements Command {
    }

    private record Resume(ActorRef<State> replyTo) implements Command {
    }

    private enum Stop implements Command {
        INSTANCE
    }

    /** Replace the I/O map (devices added or removed); takes effect at the next exit handled. */
    public record SetIoMap(IoMap map) implements Command {
    }

    /** Ask for exit counts. */
    public record GetStats(ActorRef<Stats> replyTo) implements Command {
    }

    /** A vCPU's lifecycle. */
    public enum State {
        CREATED,
        RUNNING,
        PAUSED,
        HALTED,
        FAILED
    }

    /**
     * Exit counts by reason ({@code io}, {@code mmio}, {@code hlt}, {@code interrupted}, ...) and accesses no
     * device claimed.
     */
    public record Stats(int vcpu, State state, Map<String, Long> exits, long unclaimed) {
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
     * Exit counts, readable from any thread while the vCPU runs (its own thread is busy in the guest and cannot
     * answer messages then). Atomic counters, no locks.
     */
    public static final class ExitCounters {
        private final java.util.concurrent.ConcurrentHashMap<String, java.util.concurrent.atomic.LongAdder> exits =
                new java.util.concurrent.ConcurrentHashMap<>();
        private final java.util.concurrent.atomic.LongAdder unclaimed = new java.util.concurrent.atomic.LongAdder();

        void count(String reason) {
            exits.computeIfAbsent(reason, r -> new java.util.concurrent.atomic.LongAdder()).increment();
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
    }

    /**
     * The thread-safe handle to a vCPU: pause, resume and stop reach it promptly even while it is inside the guest,
     * and its exit counters can be read at any time.
     */
    public record Control(ActorRef<Command> ref, KvmVcpu vcpu, ExitCounters counters) {
        /** Make the guest exit, then pause; {@code replyTo} hears the state once paused. */
        public void pause(ActorRef<State> replyTo) {
            vcpu.requestExit();
            ref.tell(new Pause(replyTo));
        }

        public void resume(ActorRef<State> replyTo) {
            ref.tell(new Resume(replyTo));
        }

        /** Make the guest exit, then stop the actor (which closes the vCPU). */
        public void stop() {
            vcpu.requestExit();
            ref.tell(Stop.INSTANCE);
        }
    }

    private final KvmVcpu vcpu;
    private final ActorRef<Event> observer;
    private IoMap io;
    private State state = State.CREATED;
    private final ExitCounters counters;

    private VcpuActor(ActorContext<Command> context, KvmVcpu vcpu, IoMap io, ActorRef<Event> observer,
            ExitCounters counters) {
        super(context);
        this.counters = counters;
        this.vcpu = vcpu;
        this.io = io;
        this.observer = observer;
    }

    /**
     * A vCPU actor for {@code vcpu} (already set up: registers, CPUID), which it owns from now on. Spawn it with
     * {@link #DISPATCHER} and send {@link Run} to start the guest.
     */
    public static Behavior<Command> create(KvmVcpu vcpu, IoMap io, ActorRef<Event> observer, ExitCounters counters) {
        return Behaviors.setup(context -> new VcpuActor(context, vcpu, io, observer, counters));
    }

    @Override
    public Receive<Command> createReceive() {
        return newReceiveBuilder()
                .onMessageEquals(Run.INSTANCE, this::onRun)
                .onMessage(Pause.class, this::onPause)
                .onMessage(Resume.class, this::onResume)
                .onMessageEquals(Stop.INSTANCE, Behaviors::stopped)
                .onMessage(SetIoMap.class, m -> {
                    io = m.map();
                    return this;
                })
                .onMessage(GetStats.class, this::onGetStats)
                .onSignal(PostStop.class, signal -> onPostStop())
                .build();
    }

    private Behavior<Command> onRun() {
        if (state == State.CREATED) {
            state = State.RUNNING;
        }
        if (state != State.RUNNING) {
            return this;
        }
        while (true) {
            VcpuExit exit = vcpu.run();
            count(exit);
            if (exit instanceof VcpuExit.Io portIo) {
                handlePortIo(portIo);
            } else if (exit instanceof VcpuExit.Mmio mmio) {
                handleMmio(mmio);
            } else if (exit instanceof VcpuExit.Interrupted) {
                // Asked to exit (a pause or stop message follows) or a stray signal: read the mailbox first.
                if (!vcpu.exitRequested()) {
                    getContext().getSelf().tell(Run.INSTANCE);
                }
                return this;
            } else if (exit instanceof VcpuExit.Hlt hlt) {
                state = State.HALTED;
                getContext().getLog().info("vCPU {} halted at rip 0x{}", vcpu.id(),
                        Long.toHexString(hlt.registers().rip()));
                observer.tell(new Halted(vcpu.id(), hlt.registers()));
                return this;
            } else {
                state = State.FAILED;
                String reason = describe(exit);
                getContext().getLog().error("vCPU {} stopped: {}", vcpu.id(), reason);
                observer.tell(new Failed(vcpu.id(), reason, registersOf(exit)));
                return this;
            }
        }
    }

    private void count(VcpuExit exit) {
        counters.count(exit.getClass().getSimpleName().toLowerCase(java.util.Locale.ROOT));
    }

    private void handlePortIo(VcpuExit.Io portIo) {
        Optional<IoMap.Entry> device = io.find(DeviceIo.Space.PIO, portIo.port());
        if (device.isEmpty()) {
            counters.unclaimed.increment();
            getContext().getLog().debug("vCPU {}: unclaimed port 0x{}", vcpu.id(), Integer.toHexString(portIo.port()));
            if (portIo.in()) {
                vcpu.completeIn(portIo, -1L);
            }
            return;
        }
        IoMap.Entry e = device.get();
        long offset = portIo.port() - e.range().base();
        if (portIo.in()) {
            vcpu.completeIn(portIo, access(e, DeviceIo.Space.PIO, portIo.port(), offset,
                    portIo.size(), false, 0));
        } else {
            access(e, DeviceIo.Space.PIO, portIo.port(), offset, portIo.size(), true,
                    portIo.data());
        }
    }

    private void handleMmio(VcpuExit.Mmio mmio) {
        Optional<IoMap.Entry> device = io.find(DeviceIo.Space.MMIO, mmio.address());
        if (device.isEmpty()) {
            counters.unclaimed.increment();
            getContext().getLog().debug("vCPU {}: unclaimed MMIO 0x{}", vcpu.id(), Long.toHexString(mmio.address()));
            if (!mmio.write()) {
                vcpu.completeMmioRead(mmio, -1L);
            }
            return;
        }
        IoMap.Entry e = device.get();
        long offset = mmio.address() - e.range().base();
        long value = access(e, DeviceIo.Space.MMIO, mmio.address(), offset, mmio.size(),
                mmio.write(), mmio.data());
        if (!mmio.write()) {
            vcpu.completeMmioRead(mmio, value);
        }
    }

    /** Ask the device and wait: this thread is the vCPU's own, blocking it is what a real CPU's bus does. */
    private long access(IoMap.Entry e, DeviceIo.Space space, long address, long offset, int size, boolean write,
            long data) {
        try {
            DeviceIo.Result result = AskPattern.<DeviceIo.Command, DeviceIo.Result>ask(e.device(),
                    replyTo -> write ? new DeviceIo.Write(space, address, offset, size, data, replyTo)
                            : new DeviceIo.Read(space, address, offset, size, replyTo),
                    DEVICE_TIMEOUT, getContext().getSystem().scheduler())
                    .toCompletableFuture().get(DEVICE_TIMEOUT.toMillis() + 500, TimeUnit.MILLISECONDS);
            if (result instanceof DeviceIo.Completed done) {
                return done.value();
            }
            getContext().getLog().warn("vCPU {}: device {} failed an access at 0x{}: {}", vcpu.id(), e.name(),
                    Long.toHexString(address), ((DeviceIo.Failed) result).reason());
        } catch (InterruptedException ex) {
            Thread.currentThread().interrupt();
        } catch (Exception ex) {
            getContext().getLog().warn("vCPU {}: device {} did not answer an access at 0x{}: {}", vcpu.id(),
                    e.name(), Long.toHexString(address), ex.toString());
        }
        return -1L;
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

    private Behavior<Command> onPause(Pause pause) {
        if (state == State.RUNNING) {
            state = State.PAUSED;
        }
        pause.replyTo().tell(state);
        return this;
    }

    private Behavior<Command> onResume(Resume resume) {
        if (state == State.PAUSED) {
            state = State.RUNNING;
            vcpu.clearExitRequest();
            getContext().getSelf().tell(Run.INSTANCE);
        }
        resume.replyTo().tell(state);
        return this;
    }

    private Behavior<Command> onGetStats(GetStats get) {
        get.replyTo().tell(new Stats(vcpu.id(), state, counters.snapshot(), counters.unclaimed()));
        return this;
    }

    private Behavior<Command> onPostStop() {
        vcpu.close();
        return this;
    }
}
