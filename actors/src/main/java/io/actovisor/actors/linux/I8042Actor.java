package io.actovisor.actors.linux;

import io.actovisor.actors.device.DeviceIo;
import io.actovisor.devices.i8042.I8042;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;

/**
 * The {@link I8042} on ports 0x60 and 0x64: when the guest pulses the reset line, the {@code observer} hears
 * {@link LinuxGuestEvent.ResetRequested} (the VM stops; actovisor does not reboot a guest in place).
 */
public final class I8042Actor extends AbstractBehavior<DeviceIo.Command> {
    private final I8042 controller;

    private I8042Actor(ActorContext<DeviceIo.Command> context, String vm,
            ActorRef<LinuxGuestEvent.ResetRequested> observer) {
        super(context);
        this.controller = new I8042(() -> {
            context.getLog().info("VM {}: the guest pulsed the reset line (i8042 0xfe)", vm);
            observer.tell(new LinuxGuestEvent.ResetRequested(vm));
        });
    }

    public static Behavior<DeviceIo.Command> create(String vm, ActorRef<LinuxGuestEvent.ResetRequested> observer) {
        return Behaviors.setup(context -> new I8042Actor(context, vm, observer));
    }

    @Override
    public Receive<DeviceIo.Command> createReceive() {
        return newReceiveBuilder()
                .onMessage(DeviceIo.Read.class, r -> {
                    r.replyTo().tell(new DeviceIo.Completed(controller.read((int) r.address())));
                    return this;
                })
                .onMessage(DeviceIo.Write.class, w -> {
                    controller.write((int) w.address(), (int) w.value());
                    w.replyTo().tell(new DeviceIo.Completed(0));
                    return this;
                })
                .build();
    }
}
