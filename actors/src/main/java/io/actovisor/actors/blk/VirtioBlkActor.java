package io.actovisor.actors.blk;

import io.actovisor.actors.ask.ContextAsk;
import io.actovisor.actors.device.DeviceIo;
import io.actovisor.actors.device.DeviceTimeouts;
import io.actovisor.actors.vfio.ContainerDmaActor;
import io.actovisor.actors.vfio.VfioContainerActor;
import io.actovisor.devices.virtio.VirtioException;
import io.actovisor.devices.virtio.VirtioMmio;
import io.actovisor.devices.virtio.Virtqueue;
import io.actovisor.devices.virtio.blk.VirtioBlk;
import io.actovisor.kernel.kvm.IrqLine;
import io.actovisor.memory.GuestMemoryView;
import java.io.ByteArrayOutputStream;
import java.time.Duration;
import java.util.HashSet;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;
import org.apache.pekko.actor.typed.javadsl.StashBuffer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The guest-facing virtio-blk device (virtio-mmio) over a RAM disk ({@link VirtioBlk}). The descriptor rings are
 * read through guest memory; the request buffers (header, data, status) go through the VM's <b>VFIO container</b>
 * when one is given ({@link ContainerDmaActor.DmaRead} / {@link ContainerDmaActor.DmaWrite} with iova = guest
 * physical address, as a passthrough device's DMA would: on the {@code pinned} backend through the container's
 * long-term pins), else through guest memory directly.
 *
 * <p>A notify completes at once; the device serves the available requests one at a time and raises its interrupt
 * line as each completes. A request whose buffers the IOMMU refuses completes with {@code IOERR}; a chain that cannot
 * be answered, or a result write the IOMMU refuses (the guest must not see OK on data it did not get), puts the
 * device in DEVICE_NEEDS_RESET. Status writes wait while a request is in flight, so a reset never meets a
 * half-served request. The device keeps a log of the guest page
 * frames its data buffers covered ({@link GetDmaLog}), which the coherence tests intersect with ballooned frames.
 */
public final class VirtioBlkActor extends AbstractBehavior<DeviceIo.Command> {
    /** Ask for the device's counters and the frames its data buffers covered since the last {@link ClearDmaLog}. */
    public record GetDmaLog(ActorRef<DmaLog> replyTo) implements DeviceIo.Command {
    }

    /** Forget the logged frames (the counters stay). */
    public record ClearDmaLog(ActorRef<org.apache.pekko.Done> replyTo) implements DeviceIo.Command {
    }

    /**
     * The device's counters and log.
     *
     * @param requests        requests completed
     * @param errors          of them, completed with a status other than OK
     * @param bytesIn         bytes of disk data written into guest buffers (reads of the disk)
     * @param bytesOut        bytes of guest buffers written to the disk
     * @param viaContainer    whether the buffers go through a VFIO container
     * @param containerFaults DMA transfers the container refused
     * @param frames          guest page frames (address / 4096) data buffers covered since the last clear, sorted
     */
    public record DmaLog(long requests, long errors, long bytesIn, long bytesOut, boolean viaContainer,
            long containerFaults, long[] frames) {
        public DmaLog {
            frames = frames.clone();
        }

        @Override
        public long[] frames() {
            return frames.clone();
        }
    }

    private record Transferred(long sequence, int index, byte[] data, String failure) implements DeviceIo.Command {
    }

    private static final Logger LOG = LoggerFactory.getLogger(VirtioBlkActor.class);
    private static final int FRAME_SHIFT = 12;

    private final String name;
    /** One DMA transfer's wait ({@link DeviceTimeouts#deviceDma()}). */
    private final Duration dmaTimeout;
    private final VirtioBlk device;
    private final VirtioMmio mmio;
    private final Optional<ActorRef<VfioContainerActor.Command>> container;
    private final Optional<IrqLine> irq;
    private final StashBuffer<DeviceIo.Command> stash;
    private final Set<Long> frames = new HashSet<>();
    private long sequence;
    private Virtqueue.Chain current;
    private byte[][] parts;
    private int outstanding;
    private String failure;
    private VirtioBlk.Completion completion;
    private long requests;
    private long errors;
    private long bytesIn;
    private long bytesOut;
    private long containerFaults;

    private VirtioBlkActor(ActorContext<DeviceIo.Command> context, String name, GuestMemoryView memory, long bytes,
            Optional<ActorRef<VfioContainerActor.Command>> container, Optional<IrqLine> irq,
            StashBuffer<DeviceIo.Command> stash) {
        super(context);
        this.dmaTimeout = DeviceTimeouts.of(context.getSystem()).deviceDma();
        this.name = name;
        this.device = new VirtioBlk(name, bytes);
        this.mmio = new VirtioMmio(name, device, memory);
        this.container = container;
        this.irq = irq;
        this.stash = stash;
    }

    /**
     * A virtio-blk named {@code name} (its GET_ID serial) with a zeroed RAM disk of {@code bytes}, whose buffers go
     * through {@code container} if present, else through {@code memory}; {@code irq} is high while
     * {@code InterruptStatus} is not zero.
     */
    public static Behavior<DeviceIo.Command> create(String name, GuestMemoryView memory, long bytes,
            Optional<ActorRef<VfioContainerActor.Command>> container, Optional<IrqLine> irq) {
        return Behaviors.withStash(1000, stash -> Behaviors.setup(context -> new VirtioBlkActor(context, name, memory,
                bytes, container, irq, stash)));
    }

    @Override
    public Receive<DeviceIo.Command> createReceive() {
        return newReceiveBuilder()
                .onMessage(DeviceIo.Read.class, this::onRead)
                .onMessage(DeviceIo.Write.class, this::onWrite)
                .onMessage(Transferred.class, this::onTransferred)
                .onMessage(GetDmaLog.class, this::onGetDmaLog)
                .onMessage(ClearDmaLog.class, this::onClearDmaLog)
                .build();
    }

    private void interrupt() {
        irq.ifPresent(line -> line.set(mmio.read(VirtioMmio.INTERRUPT_STATUS, 4) != 0));
    }

    private Behavior<DeviceIo.Command> onRead(DeviceIo.Read read) {
        read.replyTo().tell(new DeviceIo.Completed(mmio.read((int) read.offset(), read.size())));
        return this;
    }

    private Behavior<DeviceIo.Command> onWrite(DeviceIo.Write write) {
        if (current != null && write.offset() == VirtioMmio.STATUS) {
            stash.stash(write);
            return this;
        }
        Optional<Integer> notified = mmio.write((int) write.offset(), write.size(), write.value());
        write.replyTo().tell(new DeviceIo.Completed(0));
        if (notified.isPresent()) {
            next();
        }
        interrupt();
        return this;
    }

    /** Start the next available request, unless one is in flight. */
    private void next() {
        if (current != null || !mmio.live()) {
            return;
        }
        Optional<Virtqueue.Chain> chain;
        try {
            chain = mmio.queue(VirtioBlk.REQUEST_QUEUE).flatMap(q -> q.pop(mmio.memory()));
        } catch (VirtioException e) {
            mmio.fail(e.getMessage());
            return;
        }
        if (chain.isEmpty()) {
            return;
        }
        if (container.isEmpty()) {
            try {
                finish(chain.get(), device.process(mmio.memory(), chain.get()));
            } catch (VirtioException e) {
                mmio.fail(e.getMessage());
            }
            next();
            return;
        }
        current = chain.get();
        sequence++;
        failure = null;
        completion = null;
        List<Virtqueue.Descriptor> readable = current.descriptors().stream()
                .filter(d -> !d.deviceWrites() && d.length() > 0).toList();
        parts = new byte[readable.size()][];
        outstanding = readable.size();
        if (outstanding == 0) {
            served(new byte[0]);
            return;
        }
        for (int i = 0; i < readable.size(); i++) {
            Virtqueue.Descriptor d = readable.get(i);
            int index = i;
            long seq = sequence;
            ContextAsk.ask(getContext(), ContainerDmaActor.ReadResult.class, container.get(), dmaTimeout,
                    replyTo -> new VfioContainerActor.Dma(new ContainerDmaActor.DmaRead(d.address(), d.length(),
                            replyTo)),
                    (res, fail) -> res instanceof ContainerDmaActor.DataRead read
                            ? new Transferred(seq, index, read.data(), null)
                            : new Transferred(seq, index, null, res instanceof ContainerDmaActor.DmaFailed f
                                    ? f.reason() : "the container did not answer: " + fail));
        }
    }

    private Behavior<DeviceIo.Command> onTransferred(Transferred t) {
        if (current == null || t.sequence() != sequence) {
            return this; // cannot happen: one request at a time, and every ask answers once
        }
        if (t.failure() != null) {
            containerFaults++;
            failure = failure == null ? t.failure() : failure;
        } else if (completion == null) {
            parts[t.index()] = t.data();
        }
        if (--outstanding > 0) {
            return this;
        }
        if (completion == null) {
            if (failure != null) {
                LOG.warn("{}: DMA read of request {} failed, completing with IOERR: {}", name, current.head(),
                        failure);
                failure = null;
                return complete(() -> device.failed(current));
            }
            ByteArrayOutputStream readable = new ByteArrayOutputStream();
            for (byte[] p : parts) {
                readable.writeBytes(p);
            }
            return served(readable.toByteArray());
        }
        Virtqueue.Chain chain = current;
        VirtioBlk.Completion done = completion;
        current = null;
        if (failure != null) {
            mmio.fail("the results of request " + chain.head() + " could not be written through the container: "
                    + failure);
        } else {
            finish(chain, done);
        }
        next();
        interrupt();
        return stash.unstashAll(this);
    }

    /** The readable bytes are in: serve the request, then write its results through the container. */
    private Behavior<DeviceIo.Command> served(byte[] readable) {
        return complete(() -> device.handle(current, readable));
    }

    /** How the device model completes the current request: served, or failed with IOERR. */
    @FunctionalInterface
    private interface Completer {
        VirtioBlk.Completion complete() throws VirtioException;
    }

    /**
     * Complete the current request and write its results through the container; a chain the device model cannot
     * complete (the driver misused the queue) puts the device into DEVICE_NEEDS_RESET instead.
     */
    private Behavior<DeviceIo.Command> complete(Completer completer) {
        try {
            completion = completer.complete();
        } catch (VirtioException e) {
            mmio.fail(e.getMessage());
            current = null;
            interrupt();
            return stash.unstashAll(this);
        }
        write(completion);
        return this;
    }

    private void write(VirtioBlk.Completion c) {
        outstanding = c.writes().size();
        long seq = sequence;
        for (VirtioBlk.Write w : c.writes()) {
            ContextAsk.ask(getContext(), ContainerDmaActor.WriteResult.class, container.get(), dmaTimeout,
                    replyTo -> new VfioContainerActor.Dma(new ContainerDmaActor.DmaWrite(w.address(), w.data(),
                            replyTo)),
                    (res, fail) -> res instanceof ContainerDmaActor.DataWritten
                            ? new Transferred(seq, -1, null, null)
                            : new Transferred(seq, -1, null, res instanceof ContainerDmaActor.DmaFailed f
                                    ? f.reason() : "the container did not answer: " + fail));
        }
    }

    /** Hand the chain back, count it and log its data frames. */
    private void finish(Virtqueue.Chain chain, VirtioBlk.Completion c) {
        requests++;
        if (c.status() != VirtioBlk.S_OK) {
            errors++;
        }
        for (Virtqueue.Descriptor d : c.dataBuffers()) {
            if (c.type() == VirtioBlk.T_IN) {
                bytesIn += d.length();
            } else {
                bytesOut += d.length();
            }
            for (long f = d.address() >>> FRAME_SHIFT; f <= (d.address() + d.length() - 1) >>> FRAME_SHIFT; f++) {
                frames.add(f);
            }
        }
        mmio.queue(VirtioBlk.REQUEST_QUEUE).ifPresent(q -> {
            q.push(mmio.memory(), chain.head(), c.usedLength());
            mmio.raise(VirtioMmio.INT_USED_BUFFER);
        });
        interrupt();
    }

    private Behavior<DeviceIo.Command> onGetDmaLog(GetDmaLog get) {
        get.replyTo().tell(new DmaLog(requests, errors, bytesIn, bytesOut, container.isPresent(), containerFaults,
                frames.stream().mapToLong(Long::longValue).sorted().toArray()));
        return this;
    }

    private Behavior<DeviceIo.Command> onClearDmaLog(ClearDmaLog clear) {
        frames.clear();
        clear.replyTo().tell(org.apache.pekko.Done.getInstance());
        return this;
    }
}
