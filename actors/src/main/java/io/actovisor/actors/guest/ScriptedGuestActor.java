package io.actovisor.actors.guest;

import io.actovisor.actors.ask.ContextAsk;
import io.actovisor.actors.ask.StageFailures;
import io.actovisor.actors.device.DeviceIo;
import io.actovisor.actors.events.ActovisorEvent;
import io.actovisor.devices.guest.scripted.GuestLayout;
import io.actovisor.devices.guest.scripted.GuestMachine;
import io.actovisor.devices.guest.scripted.GuestProgram;
import io.actovisor.devices.guest.scripted.RegisterBus;
import io.actovisor.devices.guest.scripted.ScriptedGuestException;
import io.actovisor.memory.GuestMemory;
import io.actovisor.memory.GuestMemoryView;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;
import org.apache.pekko.actor.typed.javadsl.TimerScheduler;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A scripted guest: a {@link GuestProgram} driving the VM's devices from the driver side, with an actor and its
 * timers instead of a vCPU thread. Each register access the program makes is a {@link DeviceIo.Read} or
 * {@link DeviceIo.Write} to the device actor that owns the MMIO window (what a vCPU's MMIO exit sends); its answer
 * comes back as a message to this actor, which resumes the program there. So the program runs on this actor only,
 * one step at a time, and stops touching guest RAM when the actor stops (before the VM releases its memory).
 *
 * <p>A program that throws or whose stage fails stops the guest: the exception is logged, the status says
 * {@link State#FAILED} with the reason, and the VM is told; the actor stays to answer {@link GetStatus}.
 */
public final class ScriptedGuestActor extends AbstractBehavior<ScriptedGuestActor.Command> {
    /** What a scripted guest accepts. */
    public sealed interface Command {
    }

    /** Ask for the guest's status. */
    public record GetStatus(ActorRef<Status> replyTo) implements Command {
    }

    /** Where a guest's program is. */
    public enum State {
        BOOTING,
        RUNNING,
        HALTED,
        FAILED
    }

    /**
     * A guest's status.
     *
     * @param rounds  rounds started
     * @param failure why the program failed, if it did
     */
    public record Status(String program, State state, long rounds, Optional<String> failure) {
    }

    /** What the guest tells its VM when its program ends. */
    public sealed interface Event permits Halted, Failed {
    }

    /** The program finished (a round answered no next round). */
    public record Halted(String program, long rounds) implements Event {
    }

    /** The program threw or failed: the guest stopped. */
    public record Failed(String program, String reason) implements Event {
    }

    /** A device the guest reaches by MMIO: its name, the base of its window and its actor. */
    public record Device(String name, long base, ActorRef<DeviceIo.Command> ref) {
        public Device {
            Objects.requireNonNull(name, "name");
            Objects.requireNonNull(ref, "ref");
        }
    }

    /** How long a device may take to answer one register access. */
    public static final Duration ACCESS_TIMEOUT = Duration.ofSeconds(30);

    private static final Logger LOG = LoggerFactory.getLogger(ScriptedGuestActor.class);

    private record Access(CompletableFuture<Long> pending, DeviceIo.Result result, Throwable failure,
            String what) implements Command {
    }

    private record Booted(Throwable failure) implements Command {
    }

    private record RoundDone(Optional<Duration> next, Throwable failure) implements Command {
    }

    private enum NextRound implements Command {
        INSTANCE
    }

    private final String name;
    private final GuestProgram program;
    private final Machine machine;
    private final ActorRef<Event> observer;
    private final TimerScheduler<Command> timers;
    private State state = State.BOOTING;
    private long rounds;
    private Optional<String> failure = Optional.empty();

    private ScriptedGuestActor(ActorContext<Command> context, TimerScheduler<Command> timers, String name,
            GuestMemoryView memory, GuestLayout layout, List<Device> devices, GuestProgram program,
            ActorRef<Event> observer) {
        super(context);
        this.timers = timers;
        this.name = name;
        this.program = program;
        this.observer = observer;
        this.machine = new Machine(memory, layout, devices);
    }

    /**
     * A guest called {@code name} running {@code program} over {@code memory}, reaching {@code devices}; it tells
     * {@code observer} when the program halts or fails.
     */
    public static Behavior<Command> create(String name, GuestMemory memory, GuestLayout layout, List<Device> devices,
            GuestProgram program, ActorRef<Event> observer) {
        return create(name, GuestMemoryView.of(memory), layout, devices, program, observer);
    }

    /**
     * As {@link #create(String, GuestMemory, GuestLayout, List, GuestProgram, ActorRef)}, over guest memory as the
     * address space publishes it, so the program reaches RAM added after it started.
     */
    public static Behavior<Command> create(String name, GuestMemoryView memory, GuestLayout layout,
            List<Device> devices, GuestProgram program, ActorRef<Event> observer) {
        List<Device> copy = List.copyOf(devices);
        return Behaviors.withTimers(timers -> Behaviors.setup(context -> {
            ScriptedGuestActor guest = new ScriptedGuestActor(context, timers, name, memory, layout, copy, program,
                    observer);
            guest.boot();
            return guest;
        }));
    }

    @Override
    public Receive<Command> createReceive() {
        return newReceiveBuilder()
                .onMessage(Access.class, this::onAccess)
                .onMessage(Booted.class, this::onBooted)
                .onMessageEquals(NextRound.INSTANCE, this::onNextRound)
                .onMessage(RoundDone.class, this::onRoundDone)
                .onMessage(GetStatus.class, this::onGetStatus)
                .build();
    }

    private void boot() {
        LOG.info("guest {}: scripted program '{}' boots with devices {}", name, program.name(), machine.devices());
        ActorRef<Command> self = getContext().getSelf();
        run(() -> program.boot(machine)).whenComplete((v, t) -> self.tell(new Booted(t)));
    }

    /** Call the program, turning a synchronous throw into a failed stage. */
    private static <T> CompletionStage<T> run(java.util.function.Supplier<CompletionStage<T>> step) {
        try {
            CompletionStage<T> stage = step.get();
            return stage != null ? stage
                    : CompletableFuture.failedFuture(new ScriptedGuestException("the program returned no stage"));
        } catch (RuntimeException e) {
            return CompletableFuture.failedFuture(e);
        }
    }

    private Behavior<Command> onAccess(Access access) {
        if (state == State.FAILED || state == State.HALTED) {
            return this;
        }
        // Completing here runs the program's next step on this actor.
        if (access.failure() != null) {
            access.pending().completeExceptionally(new ScriptedGuestException(access.what() + ": no answer within "
                    + ACCESS_TIMEOUT.toSeconds() + " s (" + access.failure().getMessage() + ")", access.failure()));
        } else if (access.result() instanceof DeviceIo.Failed refused) {
            access.pending().completeExceptionally(new ScriptedGuestException(access.what() + " failed: "
                    + refused.reason()));
        } else {
            access.pending().complete(((DeviceIo.Completed) access.result()).value());
        }
        return this;
    }

    private Behavior<Command> onBooted(Booted booted) {
        if (booted.failure() != null) {
            return fail(booted.failure());
        }
        state = State.RUNNING;
        return onNextRound();
    }

    private Behavior<Command> onNextRound() {
        if (state != State.RUNNING) {
            return this;
        }
        rounds++;
        long round = rounds;
        ActorRef<Command> self = getContext().getSelf();
        run(() -> program.round(machine, round)).whenComplete((next, t) -> self.tell(new RoundDone(
                next != null ? next : Optional.empty(), t)));
        return this;
    }

    private Behavior<Command> onRoundDone(RoundDone done) {
        if (state != State.RUNNING) {
            return this;
        }
        if (done.failure() != null) {
            return fail(done.failure());
        }
        if (done.next().isEmpty()) {
            state = State.HALTED;
            LOG.info("guest {}: program '{}' halted after {} rounds", name, program.name(), rounds);
            observer.tell(new Halted(program.name(), rounds));
            return this;
        }
        timers.startSingleTimer(NextRound.INSTANCE, done.next().get());
        return this;
    }

    private Behavior<Command> fail(Throwable thrown) {
        Throwable cause = StageFailures.cause(thrown);
        String reason = cause.getClass().getSimpleName() + ": " + cause.getMessage();
        state = State.FAILED;
        failure = Optional.of(reason);
        timers.cancelAll();
        LOG.error("guest {}: program '{}' failed in {}; the guest stopped", name, program.name(),
                rounds == 0 ? "boot" : "round " + rounds, cause);
        observer.tell(new Failed(program.name(), reason));
        return this;
    }

    private Behavior<Command> onGetStatus(GetStatus get) {
        get.replyTo().tell(new Status(program.name(), state, rounds, failure));
        return this;
    }

    /** The program's view of the VM; its buses talk to device actors through this actor. */
    private final class Machine implements GuestMachine {
        private final GuestMemoryView memory;
        private final GuestLayout layout;
        private final Map<String, RegisterBus> buses = new LinkedHashMap<>();

        Machine(GuestMemoryView memory, GuestLayout layout, List<Device> devices) {
            this.memory = memory;
            this.layout = layout;
            devices.forEach(d -> buses.put(d.name(), new Bus(d)));
        }

        @Override
        public GuestMemoryView memoryView() {
            return memory;
        }

        @Override
        public Optional<RegisterBus> device(String device) {
            return Optional.ofNullable(buses.get(device));
        }

        @Override
        public Set<String> devices() {
            return buses.keySet();
        }

        @Override
        public void console(String line) {
            LOG.info("guest {}: {}", name, line);
            ActovisorEvent.publish(getContext().getSystem(), new ActovisorEvent.GuestConsoleLine(name, line));
        }

        @Override
        public GuestLayout layout() {
            return layout;
        }
    }

    /** A device's MMIO window: each access is an ask of the device actor, answered to this actor. */
    private final class Bus implements RegisterBus {
        private final Device device;

        Bus(Device device) {
            this.device = device;
        }

        @Override
        public CompletionStage<Long> read(long offset, int size) {
            String what = "read of " + size + " bytes at 0x" + Long.toHexString(offset) + " of device "
                    + device.name();
            return access(what, replyTo -> new DeviceIo.Read(DeviceIo.Space.MMIO, device.base() + offset, offset,
                    size, replyTo));
        }

        @Override
        public CompletionStage<Void> write(long offset, int size, long value) {
            String what = "write of 0x" + Long.toHexString(value) + " (" + size + " bytes) at 0x"
                    + Long.toHexString(offset) + " of device " + device.name();
            return access(what, replyTo -> new DeviceIo.Write(DeviceIo.Space.MMIO, device.base() + offset, offset,
                    size, value, replyTo)).thenApply(v -> null);
        }

        private CompletionStage<Long> access(String what,
                org.apache.pekko.japi.function.Function<ActorRef<DeviceIo.Result>, DeviceIo.Command> request) {
            CompletableFuture<Long> pending = new CompletableFuture<>();
            ContextAsk.ask(getContext(), DeviceIo.Result.class, device.ref(), ACCESS_TIMEOUT, request,
                    (result, failure) -> new Access(pending, result, failure, what));
            return pending;
        }
    }
}
