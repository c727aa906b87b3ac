package io.actovisor.actors.kvm;

import io.actovisor.actors.device.DeviceIo;
import java.time.Duration;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.javadsl.Behaviors;

/**
 * A paravirtual sleep (port 0x518, see {@code actovisor.h}): a write of N answers after N milliseconds (at most
 * one second), so a guest without timer interrupts can idle without spinning a host core. The vCPU waits for the
 * answer as for any device; a pause or stop takes effect when it arrives.
 */
public final class DelayPortActor {
    /** The port. */
    public static final int PORT = 0x518;
    /** Longest delay one write may ask for. */
    public static final Duration MAX_DELAY = Duration.ofSeconds(1);

    private DelayPortActor() {
    }

    private record Wake(DeviceIo.Write write) implements DeviceIo.Command {
    }

    public static Behavior<DeviceIo.Command> create() {
        return Behaviors.withTimers(timers -> Behaviors.receive(DeviceIo.Command.class)
                .onMessage(DeviceIo.Read.class, r -> {
                    r.replyTo().tell(new DeviceIo.Completed(0));
                    return Behaviors.same();
                })
                .onMessage(DeviceIo.Write.class, w -> {
                    long ms = Math.min(w.value() & 0xffff_ffffL, MAX_DELAY.toMillis());
                    timers.startSingleTimer(new Object(), new Wake(w), Duration.ofMillis(ms));
                    return Behaviors.same();
                })
                .onMessage(Wake.class, wake -> {
                    wake.write().replyTo().tell(new DeviceIo.Completed(0));
                    return Behaviors.same();
                })
                .build());
    }
}
