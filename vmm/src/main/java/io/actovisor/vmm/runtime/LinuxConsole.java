package io.actovisor.vmm.runtime;

import io.actovisor.actors.device.DeviceIo;
import io.actovisor.actors.linux.ConsoleActor;
import io.actovisor.actors.linux.LinuxGuestEvent;
import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Props;
import org.apache.pekko.actor.typed.eventstream.EventStream;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A Linux guest's serial console on the terminal: what the guest writes goes to {@code out} byte for byte (so a
 * shell prompt shows without a newline), what the user types on {@code in} goes to the guest's UART, and a panic or
 * a reboot is said on {@code out} before the VM stops.
 */
final class LinuxConsole {
    private static final Logger LOG = LoggerFactory.getLogger(LinuxConsole.class);

    private LinuxConsole() {
    }

    static void attach(ActorSystem<?> system, ActorRef<DeviceIo.Command> console, InputStream in, PrintStream out) {
        ActorRef<LinuxGuestEvent> printer = system.systemActorOf(Behaviors.receive(LinuxGuestEvent.class)
                .onMessage(LinuxGuestEvent.ConsoleOutput.class, chunk -> {
                    out.write(chunk.text().getBytes(StandardCharsets.ISO_8859_1));
                    out.flush();
                    return Behaviors.same();
                })
                .onMessage(LinuxGuestEvent.Panicked.class, panic -> {
                    out.println();
                    out.println("actovisor: the guest kernel panicked; the VM stops");
                    out.flush();
                    return Behaviors.same();
                })
                .onMessage(LinuxGuestEvent.ResetRequested.class, reset -> {
                    out.println();
                    out.println("actovisor: the guest rebooted; the VM stops");
                    out.flush();
                    return Behaviors.same();
                }).build(), "linux-console", Props.empty());
        system.eventStream().tell(new EventStream.Subscribe<>(LinuxGuestEvent.ConsoleOutput.class,
                printer.narrow()));
        system.eventStream().tell(new EventStream.Subscribe<>(LinuxGuestEvent.Panicked.class, printer.narrow()));
        system.eventStream().tell(new EventStream.Subscribe<>(LinuxGuestEvent.ResetRequested.class,
                printer.narrow()));
        Thread reader = new Thread(() -> {
            byte[] buffer = new byte[256];
            try {
                for (int n = in.read(buffer); n >= 0; n = in.read(buffer)) {
                    if (n > 0) {
                        console.tell(new ConsoleActor.Input(new String(buffer, 0, n, StandardCharsets.ISO_8859_1)));
                    }
                }
            } catch (IOException e) {
                LOG.warn("Reading the terminal for the guest console failed: {}", e.toString());
            }
        }, "actovisor-console-input");
        reader.setDaemon(true);
        reader.start();
    }
}
