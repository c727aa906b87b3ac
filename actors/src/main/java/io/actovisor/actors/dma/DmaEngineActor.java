package io.actovisor.actors.dma;

import static io.actovisor.devices.dma.DmaEngine.*;

import io.actovisor.actors.ask.ContextAsk;
import io.actovisor.actors.device.DeviceIo;
import io.actovisor.actors.device.DeviceTimeouts;
import io.actovisor.actors.vfio.ContainerDmaActor;
import io.actovisor.actors.vfio.VfioContainerActor;
import java.time.Duration;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;

/**
 * The emulated DMA engine behind a VFIO group: its registers ({@link io.actovisor.devices.dma.DmaEngine}) answer
 * the guest's MMIO, and its transfers go to its container's DMA side ({@link ContainerDmaActor}) as
 * {@code DmaRead} / {@code DmaWrite}, so they reach guest memory through the container's IOMMU (on the {@code pinned} backend: through the pinned pages). A transfer
 * runs while the guest polls {@code STATUS}; an IOMMU refusal ends it with {@code STATUS_ERROR} and
 * {@code ERROR_FAULT}.
 */
public final class DmaEngineActor extends AbstractBehavior<DeviceIo.Command> {

    private record Read(ContainerDmaActor.ReadResult result) implements DeviceIo.Command {
    }

    private record Written(ContainerDmaActor.WriteResult result) implements DeviceIo.Command {
    }

    private final ActorRef<VfioContainerActor.Command> container;
    /** One DMA transfer's wait ({@link DeviceTimeouts#deviceDma()}). */
    private final Duration dmaTimeout;
    private long source;
    private long destination;
    private long length;
    private long mode;
    private long status = STATUS_IDLE;
    private long result;
    private long error;
    private long transfers;

    private DmaEngineActor(ActorContext<DeviceIo.Command> context, ActorRef<VfioContainerActor.Command> container) {
        super(context);
        this.dmaTimeout = DeviceTimeouts.of(context.getSystem()).deviceDma();
        this.container = container;
    }

    /** An engine doing DMA through {@code container}. */
    public static Behavior<DeviceIo.Command> create(ActorRef<VfioContainerActor.Command> container) {
        return Behaviors.setup(context -> new DmaEngineActor(context, container));
    }

    @Override
    public Receive<DeviceIo.Command> createReceive() {
        return newReceiveBuilder()
                .onMessage(DeviceIo.Read.class, this::onRead)
                .onMessage(DeviceIo.Write.class, this::onWrite)
                .onMessage(Read.class, this::onDataRead)
                .onMessage(Written.class, this::onDataWritten)
                .build();
    }

    private Behavior<DeviceIo.Command> onRead(DeviceIo.Read r) {
        long value = switch ((int) r.offset()) {
            case ID -> MAGIC;
            case SOURCE -> source;
            case DESTINATION -> destination;
            case LENGTH -> length;
            case MODE -> mode;
            case STATUS -> status;
            case RESULT -> result;
            case ERROR -> error;
            default -> 0;
        };
        r.replyTo().tell(new DeviceIo.Completed(value));
        return this;
    }

    private Behavior<DeviceIo.Command> onWrite(DeviceIo.Write w) {
        switch ((int) w.offset()) {
            case SOURCE -> source = w.value();
            case DESTINATION -> destination = w.value();
            case LENGTH -> length = w.value();
            case MODE -> mode = w.value();
            case DOORBELL -> start();
            default -> getContext().getLog().debug("DMA engine: write to read-only or unknown register 0x{}",
                    Long.toHexString(w.offset()));
        }
        w.replyTo().tell(new DeviceIo.Completed(0));
        return this;
    }

    private void start() {
        if (status == STATUS_BUSY) {
            return;
        }
        if (length == 0 || length % 8 != 0 || length > MAX_LENGTH) {
            fail(ERROR_LENGTH, "length " + length + " must be a non-zero multiple of 8 up to " + MAX_LENGTH);
            return;
        }
        status = STATUS_BUSY;
        error = ERROR_NONE;
        ContextAsk.ask(getContext(), ContainerDmaActor.ReadResult.class, container, dmaTimeout,
                replyTo -> new VfioContainerActor.Dma(new ContainerDmaActor.DmaRead(source, (int) length, replyTo)),
                (res, failure) -> new Read(res != null ? res : new ContainerDmaActor.DmaFailed(
                        "the container did not answer: " + failure, java.util.Optional.empty())));
    }

    private Behavior<DeviceIo.Command> onDataRead(Read read) {
        if (read.result() instanceof ContainerDmaActor.DmaFailed failed) {
            fail(ERROR_FAULT, failed.reason());
            return this;
        }
        byte[] data = ((ContainerDmaActor.DataRead) read.result()).data();
        if (mode == MODE_CHECKSUM) {
            result = checksum(data);
            done();
            return this;
        }
        ContextAsk.ask(getContext(), ContainerDmaActor.WriteResult.class, container, dmaTimeout,
                replyTo -> new VfioContainerActor.Dma(new ContainerDmaActor.DmaWrite(destination, data, replyTo)),
                (res, failure) -> new Written(res != null ? res : new ContainerDmaActor.DmaFailed(
                        "the container did not answer: " + failure, java.util.Optional.empty())));
        return this;
    }

    private Behavior<DeviceIo.Command> onDataWritten(Written written) {
        if (written.result() instanceof ContainerDmaActor.DmaFailed failed) {
            fail(ERROR_FAULT, failed.reason());
        } else {
            done();
        }
        return this;
    }

    private void done() {
        transfers++;
        status = STATUS_DONE;
    }

    private void fail(long code, String reason) {
        getContext().getLog().warn("DMA engine transfer failed: {}", reason);
        status = STATUS_ERROR;
        error = code;
    }
}
