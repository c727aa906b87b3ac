package io.actovisor.actors.kvm;

import io.actovisor.actors.device.DeviceIo;
import io.actovisor.actors.events.ActovisorEvent;
import io.actovisor.devices.serial.Uart16550;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.PostStop;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;

/**
 * The guest console: a {@link Uart16550} answering port I/O. Each line the guest writes is logged and published as
 * {@link ActovisorEvent.GuestConsoleLine}, which the VMM streams to its output.
 */
public final class SerialActor extends AbstractBehavior<DeviceIo.Command> {
    private final String name;
    private final Uart16550 uart;

    private SerialActor(ActorContext<DeviceIo.Command> context, String name) {
        super(context);
        this.name = name;
        this.uart = new Uart16550(line -> {
            context.getLog().info("guest {}: {}", name, line);
            ActovisorEvent.publish(context.getSystem(), new ActovisorEvent.GuestConsoleLine(name, line));
        });
    }

    /** A UART called {@code name} (the device name its port region gives). */
    public static Behavior<DeviceIo.Command> create(String name) {
        return Behaviors.setup(context -> new SerialActor(context, name));
    }

    @Override
    public Receive<DeviceIo.Command> createReceive() {
        return newReceiveBuilder()
                .onMessage(DeviceIo.Read.class, r -> {
                    r.replyTo().tell(new DeviceIo.Completed(uart.read((int) r.offset())));
                    return this;
                })
                .onMessage(DeviceIo.Write.class, w -> {
                    uart.write((int) w.offset(), (int) w.value());
                    w.replyTo().tell(new DeviceIo.Completed(0));
                    return this;
                })
                .onSignal(PostStop.class, s -> {
                    uart.flush();
                    return this;
                })
                .build();
    }
}
