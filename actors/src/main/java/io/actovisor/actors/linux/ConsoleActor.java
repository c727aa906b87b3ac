package io.actovisor.actors.linux;

import io.actovisor.actors.device.DeviceIo;
import io.actovisor.actors.events.ActovisorEvent;
import io.actovisor.kernel.kvm.IrqLine;
import io.actovisor.devices.serial.InterruptingUart;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.List;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.PostStop;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;
import org.apache.pekko.actor.typed.javadsl.TimerScheduler;

/**
 * A Linux guest's console: an {@link InterruptingUart} on port I/O whose interrupt drives a GSI of the in-kernel
 * interrupt controller, with input from the host ({@link Input}). What the guest writes is published as
 * {@link LinuxGuestEvent.ConsoleOutput} chunks (at each newline, or {@value #FLUSH_MILLIS} ms after the last byte
 * so a shell prompt shows) and as {@link ActovisorEvent.GuestConsoleLine} lines. It keeps the last
 * {@value #KEPT_LINES} lines; a line with "Kernel panic" tells the {@code observer} the guest panicked.
 */
public final class ConsoleActor extends AbstractBehavior<DeviceIo.Command> {
    /** Lines kept for a panic report. */
    public static final int KEPT_LINES = 40;
    static final int FLUSH_MILLIS = 20;
    private static final String PANIC = "Kernel panic - not syncing";
    private static final int MAX_LINE = 4096;

    /** Bytes from the host's terminal for the guest to read (ISO-8859-1 characters, one per byte). */
    public record Input(String text) implements DeviceIo.Command {
    }

    /** Ask for the console's last lines. */
    public record GetLastLines(ActorRef<List<String>> replyTo) implements DeviceIo.Command {
    }

    private enum Flush implements DeviceIo.Command {
        INSTANCE
    }

    /** The panic's last lines have had their moment to arrive: report it. */
    private enum ReportPanic implements DeviceIo.Command {
        INSTANCE
    }

    private final String name;
    private final IrqLine line;
    private final ActorRef<LinuxGuestEvent.Panicked> observer;
    private final String vm;
    private final TimerScheduler<DeviceIo.Command> timers;
    private final InterruptingUart uart;
    private final ByteArrayOutputStream chunk = new ByteArrayOutputStream();
    private final ByteArrayOutputStream currentLine = new ByteArrayOutputStream();
    private final Deque<String> lastLines = new ArrayDeque<>();
    private boolean panicked;
    /** The panic was reported to the observer. */
    private boolean panicReported;

    private ConsoleActor(ActorContext<DeviceIo.Command> context, TimerScheduler<DeviceIo.Command> timers, String name,
            String vm, IrqLine line, ActorRef<LinuxGuestEvent.Panicked> observer) {
        super(context);
        this.timers = timers;
        this.name = name;
        this.vm = vm;
        this.line = line;
        this.observer = observer;
        this.uart = new InterruptingUart(this::transmitted);
    }

    /** The console {@code name} of VM {@code vm}, interrupting on {@code line}; panics go to {@code observer}. */
    public static Behavior<DeviceIo.Command> create(String name, String vm, IrqLine line,
            ActorRef<LinuxGuestEvent.Panicked> observer) {
        return Behaviors.withTimers(timers -> Behaviors.setup(context -> new ConsoleActor(context, timers, name, vm,
                line, observer)));
    }

    @Override
    public Receive<DeviceIo.Command> createReceive() {
        return newReceiveBuilder()
                .onMessage(DeviceIo.Read.class, this::onRead)
                .onMessage(DeviceIo.Write.class, this::onWrite)
                .onMessage(Input.class, this::onInput)
                .onMessage(GetLastLines.class, this::onGetLastLines)
                .onMessageEquals(Flush.INSTANCE, this::onFlush)
                .onMessageEquals(ReportPanic.INSTANCE, () -> {
                    reportPanic();
                    return this;
                })
                .onSignal(PostStop.class, signal -> onPostStop())
                .build();
    }

    private Behavior<DeviceIo.Command> onRead(DeviceIo.Read read) {
        int value = uart.read((int) read.offset());
        line.set(uart.interruptLine());
        read.replyTo().tell(new DeviceIo.Completed(value));
        return this;
    }

    private Behavior<DeviceIo.Command> onWrite(DeviceIo.Write write) {
        uart.write((int) write.offset(), (int) write.value());
        line.set(uart.interruptLine());
        write.replyTo().tell(new DeviceIo.Completed(0));
        return this;
    }

    private Behavior<DeviceIo.Command> onInput(Input input) {
        uart.receive(input.text().getBytes(StandardCharsets.ISO_8859_1));
        line.set(uart.interruptLine());
        return this;
    }

    private Behavior<DeviceIo.Command> onGetLastLines(GetLastLines get) {
        get.replyTo().tell(List.copyOf(lastLines));
        return this;
    }

    private void transmitted(int b) {
        chunk.write(b);
        if (b == '\n') {
            endLine();
            publishChunk();
        } else if (b != '\r') {
            currentLine.write(b);
            if (currentLine.size() >= MAX_LINE) {
                endLine();
            }
        }
        if (chunk.size() > 0 && !timers.isTimerActive(Flush.INSTANCE)) {
            timers.startSingleTimer(Flush.INSTANCE, Flush.INSTANCE, Duration.ofMillis(FLUSH_MILLIS));
        }
    }

    private void endLine() {
        String text = currentLine.toString(StandardCharsets.UTF_8);
        currentLine.reset();
        if (lastLines.size() == KEPT_LINES) {
            lastLines.removeFirst();
        }
        lastLines.addLast(text);
        getContext().getLog().debug("guest {}: {}", name, text);
        ActovisorEvent.publish(getContext().getSystem(), new ActovisorEvent.GuestConsoleLine(name, text));
        if (!panicked && text.contains(PANIC)) {
            panicked = true;
            // Give the kernel's last lines (the stack and "end Kernel panic") a moment to arrive first.
            timers.startSingleTimer(ReportPanic.INSTANCE, ReportPanic.INSTANCE, Duration.ofMillis(200));
        }
    }

    private void publishChunk() {
        if (chunk.size() > 0) {
            getContext().getSystem().eventStream().tell(new org.apache.pekko.actor.typed.eventstream.EventStream
                    .Publish<>(new LinuxGuestEvent.ConsoleOutput(name, chunk.toString(StandardCharsets.ISO_8859_1))));
            chunk.reset();
        }
    }

    private Behavior<DeviceIo.Command> onFlush() {
        publishChunk();
        return this;
    }

    private void reportPanic() {
        panicReported = true;
        observer.tell(new LinuxGuestEvent.Panicked(vm, List.copyOf(lastLines)));
    }

    private Behavior<DeviceIo.Command> onPostStop() {
        if (currentLine.size() > 0) {
            endLine();
        }
        publishChunk();
        if (panicked && !panicReported) {
            // The VM stopped within the panic's moment (its vCPU failed right after the panic, say): the observer
            // is stopping too, so the report goes to the event stream, where the VM would have published it.
            panicReported = true;
            getContext().getSystem().eventStream().tell(new org.apache.pekko.actor.typed.eventstream.EventStream
                    .Publish<>(new LinuxGuestEvent.Panicked(vm, List.copyOf(lastLines))));
        }
        return this;
    }

    /** The console's last lines, oldest first (for tests of the actor's state). */
    List<String> lastLines() {
        return new ArrayList<>(lastLines);
    }
}
