package io.actovisor.actors.kvm;

import io.actovisor.actors.device.DeviceIo;
import io.actovisor.actors.events.ActovisorEvent;
import java.util.ArrayList;
import java.util.List;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;

/**
 * The firmware's report port (ports 0x510-0x517, see {@code actovisor.h}): the guest writes the low 32 bits of a
 * value at offset 0 and the high 32 bits at offset 4, and the second write delivers it. Each value is logged and
 * published as {@link ActovisorEvent.GuestReported}.
 */
public final class ReportPortActor extends AbstractBehavior<DeviceIo.Command> {
    /** The port range's base. */
    public static final int BASE = 0x510;
    /** Ports in the range. */
    public static final int PORTS = 8;

    /** Ask for every value reported so far. */
    public record GetReports(ActorRef<List<Long>> replyTo) implements DeviceIo.Command {
    }

    private final List<Long> reports = new ArrayList<>();
    private long low;

    private ReportPortActor(ActorContext<DeviceIo.Command> context) {
        super(context);
    }

    public static Behavior<DeviceIo.Command> create() {
        return Behaviors.setup(ReportPortActor::new);
    }

    @Override
    public Receive<DeviceIo.Command> createReceive() {
        return newReceiveBuilder()
                .onMessage(DeviceIo.Read.class, r -> {
                    r.replyTo().tell(new DeviceIo.Completed(0xffff_ffffL));
                    return this;
                })
                .onMessage(DeviceIo.Write.class, this::onWrite)
                .onMessage(GetReports.class, g -> {
                    g.replyTo().tell(List.copyOf(reports));
                    return this;
                })
                .build();
    }

    private Behavior<DeviceIo.Command> onWrite(DeviceIo.Write w) {
        if (w.offset() == 0) {
            low = w.value() & 0xffff_ffffL;
        } else if (w.offset() == 4) {
            long value = low | (w.value() & 0xffff_ffffL) << 32;
            reports.add(value);
            getContext().getLog().info("guest reported 0x{}", Long.toHexString(value));
            ActovisorEvent.publish(getContext().getSystem(), new ActovisorEvent.GuestReported(value));
        }
        w.replyTo().tell(new DeviceIo.Completed(0));
        return this;
    }
}
