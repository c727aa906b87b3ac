package io.actovisor.actors.balloon;

import io.actovisor.actors.ask.ContextAsk;
import io.actovisor.actors.device.DeviceIo;
import io.actovisor.actors.device.DeviceTimeouts;
import io.actovisor.actors.discard.DiscardManager;
import io.actovisor.devices.balloon.BalloonStatistics;
import io.actovisor.devices.balloon.VirtioBalloon;
import io.actovisor.devices.virtio.VirtioException;
import io.actovisor.devices.virtio.VirtioMmio;
import io.actovisor.devices.virtio.Virtqueue;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.GuestAddress;
import io.actovisor.memory.GuestMemory;
import io.actovisor.memory.GuestMemoryView;
import java.io.ByteArrayOutputStream;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;
import org.apache.pekko.actor.typed.javadsl.StashBuffer;
import org.apache.pekko.actor.typed.javadsl.TimerScheduler;

/**
 * The guest-facing virtio-balloon device (virtio-mmio, polled): it answers the driver's MMIO, passes inflated and
 * deflated frames to the {@link BalloonActor} (which decides whether to discard: the inhibitor), mirrors the
 * balloon's target into {@code num_pages}, and collects the guest's statistics. A notify of the inflate or deflate
 * queue completes only when the balloon has handled the frames, so when the driver's write returns, its buffers
 * are back in the used ring. Malformed driver input puts the device in DEVICE_NEEDS_RESET with a logged reason.
 */
public final class VirtioBalloonActor extends AbstractBehavior<DeviceIo.Command> {
    /** Ask for the latest statistics and the device's counters. */
    public record GetStatistics(ActorRef<Statistics> replyTo) implements DeviceIo.Command {
    }

    /**
     * Statistics and counters, Firecracker style.
     *
     * @param latest      the guest's last report, if any
     * @param eventFails  driver contract violations (each put the device in DEVICE_NEEDS_RESET)
     */
    public record Statistics(Optional<BalloonStatistics> latest, long inflateCount, long deflateCount,
            long statsUpdates, long eventFails, long targetPages, long actualPages) {
    }

    /** The discard manager mapped every discarded block again ({@code failure} null) or could not. */
    private record BlocksRestored(ActorRef<DeviceIo.Result> replyTo, String failure) implements DeviceIo.Command {
    }

    /** Ask the guest for statistics every {@code interval} from now on (Firecracker's PATCH /balloon/statistics). */
    public record SetStatsInterval(Duration interval, ActorRef<org.apache.pekko.Done> replyTo)
            implements DeviceIo.Command {
    }

    private record TargetChanged(long bytes) implements DeviceIo.Command {
    }

    /** The balloon ran its deferred discards ({@code failure} null) before a reset completes. */
    private record ResetFlushed(ActorRef<DeviceIo.Result> replyTo, String failure) implements DeviceIo.Command {
    }

    private record BalloonDone(List<Integer> heads, int queue, ActorRef<DeviceIo.Result> replyTo)
            implements DeviceIo.Command {
    }

    private enum RequestStatistics implements DeviceIo.Command {
        INSTANCE
    }

    private static final int FRAME = 4096;

    /** The dispatcher the device runs on: the VM's I/O thread, with its balloon ({@link BalloonActor#DISPATCHER}). */
    public static final org.apache.pekko.actor.typed.DispatcherSelector DISPATCHER = BalloonActor.DISPATCHER;

    private final ActorRef<BalloonActor.Command> balloon;
    private final Optional<ActorRef<DiscardManager.Command>> discardManager;
    private final VirtioBalloon device;
    private final VirtioMmio mmio;
    private final StashBuffer<DeviceIo.Command> stash;
    private final TimerScheduler<DeviceIo.Command> timers;
    private boolean busy;
    private Optional<Integer> statsHead = Optional.empty();
    private Optional<BalloonStatistics> latest = Optional.empty();
    private long inflateCount;
    private long deflateCount;
    private long statsUpdates;
    /** Whether an inflate went to the balloon since the last reset (its discard may still be queued there). */
    private boolean inflatesSinceReset;
    private final Optional<io.actovisor.kernel.kvm.IrqLine> irq;
    // Its waits on the balloon and the discard manager: shorter than a vCPU's wait on this device.
    private final DeviceTimeouts timeouts;

    private VirtioBalloonActor(ActorContext<DeviceIo.Command> context, GuestMemoryView memory,
            ActorRef<BalloonActor.Command> balloon, Optional<ActorRef<DiscardManager.Command>> discardManager,
            boolean deflateOnOom, StashBuffer<DeviceIo.Command> stash, TimerScheduler<DeviceIo.Command> timers,
            Optional<io.actovisor.kernel.kvm.IrqLine> irq) {
        super(context);
        this.timers = timers;
        this.irq = irq;
        this.balloon = balloon;
        this.discardManager = discardManager;
        this.device = new VirtioBalloon(deflateOnOom);
        this.mmio = new VirtioMmio("virtio-balloon", device, memory);
        this.stash = stash;
        this.timeouts = DeviceTimeouts.of(context.getSystem());
        balloon.tell(new BalloonActor.WatchTarget(context.messageAdapter(Long.class, TargetChanged::new)));
    }

    /**
     * A virtio-balloon over {@code memory} (guest memory as the address space publishes it: its queues and buffers
     * may lie in RAM added after the VM started) feeding {@code balloon}; it asks the guest for statistics every
     * {@code statsInterval}.
     */
    public static Behavior<DeviceIo.Command> create(GuestMemoryView memory, ActorRef<BalloonActor.Command> balloon,
            boolean deflateOnOom, Duration statsInterval) {
        return create(memory, balloon, Optional.empty(), deflateOnOom, statsInterval, Optional.empty());
    }

    /**
     * As {@link #create(GuestMemoryView, ActorRef, boolean, Duration)}, telling {@code discardManager} the guest's
     * contract: at {@code FEATURES_OK} whether the driver negotiated {@code VIRTIO_BALLOON_F_MUST_TELL_HOST}, and at
     * {@code FEATURES_OK} and on a reset that every discarded block must be mapped again (the driver may reuse
     * ballooned pages without telling); the status write completes only once that is done.
     */
    public static Behavior<DeviceIo.Command> create(GuestMemoryView memory, ActorRef<BalloonActor.Command> balloon,
            Optional<ActorRef<DiscardManager.Command>> discardManager, boolean deflateOnOom, Duration statsInterval) {
        return create(memory, balloon, discardManager, deflateOnOom, statsInterval, Optional.empty());
    }

    /**
     * As {@link #create(GuestMemoryView, ActorRef, boolean, Duration)}, with an interrupt line that is high while
     * {@code InterruptStatus} is not zero (level-triggered, as the DSDT describes it to a Linux guest).
     */
    public static Behavior<DeviceIo.Command> create(GuestMemoryView memory, ActorRef<BalloonActor.Command> balloon,
            boolean deflateOnOom, Duration statsInterval, Optional<io.actovisor.kernel.kvm.IrqLine> irq) {
        return create(memory, balloon, Optional.empty(), deflateOnOom, statsInterval, irq);
    }

    /**
     * The device with all its parts: the {@code discardManager} as in
     * {@link #create(GuestMemoryView, ActorRef, Optional, boolean, Duration)}, the interrupt line as in
     * {@link #create(GuestMemoryView, ActorRef, boolean, Duration, Optional)}.
     */
    public static Behavior<DeviceIo.Command> create(GuestMemoryView memory, ActorRef<BalloonActor.Command> balloon,
            Optional<ActorRef<DiscardManager.Command>> discardManager, boolean deflateOnOom, Duration statsInterval,
            Optional<io.actovisor.kernel.kvm.IrqLine> irq) {
        return Behaviors.withStash(1000, stash -> Behaviors.withTimers(timers -> {
            startStatsTimer(timers, statsInterval);
            return Behaviors.setup(context -> new VirtioBalloonActor(context, memory, balloon, discardManager,
                    deflateOnOom, stash, timers, irq));
        }));
    }

    /** Drive the interrupt line from InterruptStatus (after anything that may have changed it). */
    private Behavior<DeviceIo.Command> interrupt(Behavior<DeviceIo.Command> next) {
        irq.ifPresent(line -> line.set(mmio.read(VirtioMmio.INTERRUPT_STATUS, 4) != 0));
        return next;
    }

    private static void startStatsTimer(TimerScheduler<DeviceIo.Command> timers, Duration interval) {
        timers.startTimerWithFixedDelay("stats", RequestStatistics.INSTANCE, interval);
    }

    @Override
    public Receive<DeviceIo.Command> createReceive() {
        return newReceiveBuilder()
                .onMessage(DeviceIo.Read.class, this::onRead)
                .onMessage(DeviceIo.Write.class, w -> interrupt(onWrite(w)))
                .onMessage(BalloonDone.class, d -> interrupt(onBalloonDone(d)))
                .onMessage(BlocksRestored.class, r -> interrupt(onBlocksRestored(r)))
                .onMessage(ResetFlushed.class, r -> interrupt(onResetFlushed(r)))
                .onMessage(TargetChanged.class, t -> interrupt(onTargetChanged(t)))
                .onMessageEquals(RequestStatistics.INSTANCE, () -> interrupt(onRequestStatistics()))
                .onMessage(GetStatistics.class, this::onGetStatistics)
                .onMessage(SetStatsInterval.class, this::onSetStatsInterval)
                .build();
    }

    private Behavior<DeviceIo.Command> onSetStatsInterval(SetStatsInterval set) {
        startStatsTimer(timers, set.interval());
        set.replyTo().tell(org.apache.pekko.Done.getInstance());
        return this;
    }

    private Behavior<DeviceIo.Command> onRead(DeviceIo.Read read) {
        if (busy) {
            stash.stash(read);
            return this;
        }
        read.replyTo().tell(new DeviceIo.Completed(mmio.read((int) read.offset(), read.size())));
        return this;
    }

    private Behavior<DeviceIo.Command> onWrite(DeviceIo.Write write) {
        if (busy) {
            stash.stash(write);
            return this;
        }
        int statusBefore = mmio.status();
        Optional<Integer> notified = mmio.write((int) write.offset(), write.size(), write.value());
        if (write.offset() == VirtioMmio.STATUS && write.value() == 0 && inflatesSinceReset) {
            // A driver that resets the device may reuse its ballooned pages without telling: the discards the
            // balloon deferred run before the reset completes.
            inflatesSinceReset = false;
            busy = true;
            ContextAsk.ask(getContext(), BalloonActor.Flushed.class, balloon, timeouts.deviceOnBalloon(),
                    BalloonActor.Flush::new, (flushed, failure) -> new ResetFlushed(write.replyTo(),
                            failure == null ? null : "the balloon did not answer: " + failure.getMessage()));
            return this;
        }
        if (write.offset() == VirtioMmio.STATUS && discardManager.isPresent()) {
            boolean reset = write.value() == 0;
            boolean featuresOk = (mmio.status() & VirtioMmio.S_FEATURES_OK) != 0
                    && (statusBefore & VirtioMmio.S_FEATURES_OK) == 0;
            if (reset || featuresOk) {
                return restoreBeforeCompleting(reset, write.replyTo());
            }
        }
        if (notified.isEmpty()) {
            write.replyTo().tell(new DeviceIo.Completed(0));
            return this;
        }
        try {
            process(notified.get(), write.replyTo());
        } catch (VirtioException e) {
            mmio.fail(e.getMessage());
            write.replyTo().tell(new DeviceIo.Completed(0));
        }
        return this;
    }

    private void process(int queue, ActorRef<DeviceIo.Result> replyTo) {
        Virtqueue q = mmio.queue(queue).orElseThrow();
        GuestMemory memory = mmio.memory();
        if (queue == VirtioBalloon.reportingQueue(mmio.negotiatedFeatures())) {
            processReport(q, queue, replyTo);
            return;
        }
        if (queue == VirtioBalloon.STATS_QUEUE) {
            Optional<Virtqueue.Chain> chain = q.pop(memory);
            if (chain.isPresent()) {
                latest = Optional.of(BalloonStatistics.parse(readable(memory, chain.get())));
                statsUpdates++;
                statsHead = Optional.of(chain.get().head());
            }
            replyTo.tell(new DeviceIo.Completed(0));
            return;
        }
        List<Integer> heads = new ArrayList<>();
        ByteArrayOutputStream frames = new ByteArrayOutputStream();
        for (Optional<Virtqueue.Chain> c = q.pop(memory); c.isPresent(); c = q.pop(memory)) {
            heads.add(c.get().head());
            frames.writeBytes(readable(memory, c.get()));
        }
        long[] pfns = VirtioBalloon.frames(frames.toByteArray());
        busy = true;
        if (queue == VirtioBalloon.INFLATE_QUEUE) {
            inflateCount++;
            inflatesSinceReset = true;
            ContextAsk.ask(getContext(), BalloonActor.InflateResult.class, balloon, timeouts.deviceOnBalloon(),
                    r -> new BalloonActor.Inflate(pfns, r, guestTellsHost()),
                    (res, failure) -> new BalloonDone(heads, queue, replyTo));
        } else {
            deflateCount++;
            ContextAsk.ask(getContext(), BalloonActor.DeflateResult.class, balloon, timeouts.deviceOnBalloon(),
                    r -> new BalloonActor.Deflate(pfns, r), (res, failure) -> new BalloonDone(heads, queue, replyTo));
        }
    }

    /**
     * Free page reporting: each device-writable descriptor of each chain is one free chunk (guest-physical address
     * and length). The balloon discards or skips them; every chain is returned (used length 0) either way.
     */
    private void processReport(Virtqueue q, int queue, ActorRef<DeviceIo.Result> replyTo) {
        List<Integer> heads = new ArrayList<>();
        List<AddressRange> chunks = new ArrayList<>();
        for (Optional<Virtqueue.Chain> c = q.pop(mmio.memory()); c.isPresent(); c = q.pop(mmio.memory())) {
            heads.add(c.get().head());
            for (Virtqueue.Descriptor d : c.get().descriptors()) {
                if (d.deviceWrites() && d.length() > 0) {
                    chunks.add(AddressRange.of(d.address(), Integer.toUnsignedLong(d.length())));
                }
            }
        }
        busy = true;
        ContextAsk.ask(getContext(), BalloonActor.ReportResult.class, balloon, timeouts.deviceOnBalloon(),
                r -> new BalloonActor.ReportFree(chunks, r), (res, failure) -> new BalloonDone(heads, queue, replyTo));
    }

    /**
     * A reset or {@code FEATURES_OK}: from here the driver may reuse ballooned pages without telling the host, so
     * every discarded block is mapped again before the status write completes (and the driver goes on).
     */
    private Behavior<DeviceIo.Command> restoreBeforeCompleting(boolean reset, ActorRef<DeviceIo.Result> replyTo) {
        ActorRef<DiscardManager.Command> manager = discardManager.orElseThrow();
        boolean mustTellHost = !reset && (mmio.negotiatedFeatures() & VirtioBalloon.F_MUST_TELL_HOST) != 0;
        manager.tell(new DiscardManager.SetGuestContract(mustTellHost));
        busy = true;
        ContextAsk.ask(getContext(), DiscardManager.ReclaimResult.class, manager, timeouts.deviceRestore(),
                DiscardManager.RestoreAll::new, (result, failure) -> new BlocksRestored(replyTo, result == null
                        ? "the discard manager did not answer: " + failure.getMessage()
                        : result instanceof DiscardManager.ReclaimFailed failed ? failed.reason() : null));
        return this;
    }

    private Behavior<DeviceIo.Command> onResetFlushed(ResetFlushed flushed) {
        if (flushed.failure() != null) {
            mmio.fail("deferred discards did not complete before the reset: " + flushed.failure());
        }
        if (discardManager.isPresent()) {
            busy = false;
            return restoreBeforeCompleting(true, flushed.replyTo());
        }
        flushed.replyTo().tell(new DeviceIo.Completed(0));
        busy = false;
        return stash.unstashAll(this);
    }

    private Behavior<DeviceIo.Command> onBlocksRestored(BlocksRestored restored) {
        if (restored.failure() != null) {
            // Never let the driver on with pages the device may still not see: the device needs a reset.
            mmio.fail("discarded blocks could not be mapped again: " + restored.failure());
        }
        restored.replyTo().tell(new DeviceIo.Completed(0));
        busy = false;
        return stash.unstashAll(this);
    }

    private static byte[] readable(GuestMemory memory, Virtqueue.Chain chain) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        for (Virtqueue.Descriptor d : chain.descriptors()) {
            if (!d.deviceWrites() && d.length() > 0) {
                out.writeBytes(memory.read(new GuestAddress(d.address()), d.length()));
            }
        }
        return out.toByteArray();
    }

    private Behavior<DeviceIo.Command> onBalloonDone(BalloonDone done) {
        Virtqueue q = mmio.queue(done.queue()).orElse(null);
        if (q != null) {
            done.heads().forEach(head -> q.push(mmio.memory(), head, 0));
            mmio.raise(VirtioMmio.INT_USED_BUFFER);
        }
        done.replyTo().tell(new DeviceIo.Completed(0));
        busy = false;
        return stash.unstashAll(this);
    }

    private Behavior<DeviceIo.Command> onTargetChanged(TargetChanged changed) {
        if (device.setTargetPages(changed.bytes() / FRAME)) {
            mmio.configChanged();
        }
        return this;
    }

    private Behavior<DeviceIo.Command> onRequestStatistics() {
        if (statsHead.isPresent() && mmio.live()) {
            mmio.queue(VirtioBalloon.STATS_QUEUE).ifPresent(q -> {
                q.push(mmio.memory(), statsHead.get(), 0);
                mmio.raise(VirtioMmio.INT_USED_BUFFER);
            });
            statsHead = Optional.empty();
        }
        return this;
    }

    private Behavior<DeviceIo.Command> onGetStatistics(GetStatistics get) {
        get.replyTo().tell(new Statistics(latest, inflateCount, deflateCount, statsUpdates, mmio.failures(),
                device.targetPages(), device.actualPages()));
        return this;
    }

    /**
     * Whether the driver negotiated {@code VIRTIO_BALLOON_F_MUST_TELL_HOST}: only then may an inflate be answered
     * before its discard ran. A driver without it may reuse ballooned pages before its deflate reaches the device,
     * and a discard still queued then would take the data it wrote.
     */
    private boolean guestTellsHost() {
        return (mmio.negotiatedFeatures() & VirtioBalloon.F_MUST_TELL_HOST) != 0;
    }
}
