package io.actovisor.devices.guest.scripted;

import io.actovisor.devices.balloon.VirtioBalloon;
import io.actovisor.memory.GuestAddress;
import io.actovisor.memory.GuestMemory;
import io.actovisor.memory.GuestMemoryView;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;

/**
 * A virtio-balloon driver, as the firmware's {@code balloon.c}: negotiate MUST_TELL_HOST (it deflates before it
 * reuses a page), STATS_VQ, DEFLATE_ON_OOM and REPORTING, read the target ({@code num_pages}), give frames to the host
 * (inflate) or take them back (deflate) in batches of 1024 PFNs, update {@code actual}, answer statistics requests,
 * and report free chunks on the reporting queue (each chunk one device-writable descriptor, as Linux does). A request the device does not hand back is a
 * {@link ScriptedGuestException}: the device refused it (it then needs a reset).
 */
public final class BalloonDriver {
    /** PFNs per inflate or deflate request (one page of 32-bit frame numbers). */
    public static final int MAX_BATCH = 1024;
    /** The queue size the driver uses. */
    public static final int QUEUE_SIZE = 64;
    /** The statistics tags it reports (virtio 1.x: swap in/out, major/minor faults, free, total, available, caches). */
    private static final int STAT_TAGS = 8;

    private final GuestMemoryView memory;
    private final VirtioMmioDriver transport;
    private final SplitQueueDriver inflate;
    private final SplitQueueDriver deflate;
    private final SplitQueueDriver stats;
    private final SplitQueueDriver reporting;
    private long features;

    /** A driver for the balloon behind {@code bus}, its queues in device slot {@code slot} of the layout. */
    public BalloonDriver(GuestMemory memory, RegisterBus bus, int slot) {
        this(GuestMemoryView.of(memory), bus, slot);
    }

    /** As {@link #BalloonDriver(GuestMemory, RegisterBus, int)}, in guest memory as it is at each access. */
    public BalloonDriver(GuestMemoryView memory, RegisterBus bus, int slot) {
        this.memory = memory;
        this.transport = new VirtioMmioDriver("virtio-balloon", bus);
        this.inflate = new SplitQueueDriver(memory, GuestLayout.queue(slot, 0), QUEUE_SIZE);
        this.deflate = new SplitQueueDriver(memory, GuestLayout.queue(slot, 1), QUEUE_SIZE);
        this.stats = new SplitQueueDriver(memory, GuestLayout.queue(slot, 2), QUEUE_SIZE);
        this.reporting = new SplitQueueDriver(memory, GuestLayout.queue(slot, 3), QUEUE_SIZE);
    }

    public VirtioMmioDriver transport() {
        return transport;
    }

    /**
     * The driver's queue {@code index} (inflate 0, deflate 1, statistics 2, reporting 3), for scripts that write it
     * raw.
     */
    public SplitQueueDriver queue(int index) {
        return switch (index) {
            case VirtioBalloon.INFLATE_QUEUE -> inflate;
            case VirtioBalloon.DEFLATE_QUEUE -> deflate;
            case VirtioBalloon.STATS_QUEUE -> stats;
            case VirtioBalloon.STATS_QUEUE + 1 -> reporting;
            default -> throw new IllegalArgumentException("virtio-balloon has queues 0 to 3, not " + index);
        };
    }

    /** The features the driver asks for. */
    public static final long WANTED = VirtioBalloon.F_MUST_TELL_HOST | VirtioBalloon.F_STATS_VQ
            | VirtioBalloon.F_DEFLATE_ON_OOM | VirtioBalloon.F_REPORTING;

    /**
     * Initialize the device and, if statistics were negotiated, offer the first statistics buffer. The queues are
     * numbered among those that exist: the reporting queue follows the statistics queue, or takes its place.
     */
    public CompletionStage<Void> start() {
        return transport.deviceFeatures().thenCompose(offered -> {
            List<SplitQueueDriver> queues = new java.util.ArrayList<>(List.of(inflate, deflate));
            if ((offered & VirtioBalloon.F_STATS_VQ) != 0) {
                queues.add(stats);
            }
            if ((offered & VirtioBalloon.F_REPORTING) != 0) {
                queues.add(reporting);
            }
            return transport.initialize(VirtioBalloon.DEVICE_ID, WANTED, queues);
        }).thenCompose(accepted -> {
            features = accepted;
            return hasStatistics() ? reportStatistics(0, 0) : CompletableFuture.completedFuture(null);
        });
    }

    /** Whether the driver tells the host before it reuses a ballooned page (MUST_TELL_HOST negotiated). */
    public boolean tellsHost() {
        return (features & VirtioBalloon.F_MUST_TELL_HOST) != 0;
    }

    /** Whether free page reporting was negotiated. */
    public boolean hasReporting() {
        return (features & VirtioBalloon.F_REPORTING) != 0;
    }

    /** Chunks per report request, as Linux's {@code PAGE_REPORTING_CAPACITY}. */
    public static final int REPORT_CAPACITY = 32;

    /**
     * Report free {@code chunks} (guest-physical, each one descriptor the device may write), in requests of up to
     * {@link #REPORT_CAPACITY}; completes when the device handed every request back.
     */
    public CompletionStage<Void> reportFree(List<io.actovisor.memory.AddressRange> chunks) {
        if (!hasReporting()) {
            throw new ScriptedGuestException("free page reporting was not negotiated");
        }
        if (chunks.isEmpty()) {
            return CompletableFuture.completedFuture(null);
        }
        int n = Math.min(chunks.size(), REPORT_CAPACITY);
        reporting.add(chunks.subList(0, n).stream().map(c -> new SplitQueueDriver.Buffer(c.base(),
                Math.toIntExact(c.size()), true)).toList());
        int queue = VirtioBalloon.reportingQueue(features);
        return transport.notify(queue).thenCompose(v -> {
            if (reporting.pollUsed().isEmpty()) {
                throw new ScriptedGuestException("virtio-balloon did not hand back the report of " + n
                        + " free chunks (the device needs a reset)");
            }
            return reportFree(chunks.subList(n, chunks.size()));
        });
    }

    public boolean hasStatistics() {
        return (features & VirtioBalloon.F_STATS_VQ) != 0;
    }

    /** Whether the guest may deflate under memory pressure without waiting for the target to fall. */
    public boolean deflateOnOom() {
        return (features & VirtioBalloon.F_DEFLATE_ON_OOM) != 0;
    }

    /** Acknowledge pending interrupts and read the target, in 4 KiB pages. */
    public CompletionStage<Long> target() {
        return transport.takeInterrupts().thenCompose(bits -> transport.readConfig(VirtioBalloon.CONFIG_NUM_PAGES, 4))
                .thenApply(v -> v & 0xffffffffL);
    }

    /** Give {@code frames} to the host, in batches of {@link #MAX_BATCH}. */
    public CompletionStage<Void> inflate(long[] frames) {
        return sendAll(VirtioBalloon.INFLATE_QUEUE, frames, 0);
    }

    /** Take {@code frames} back from the host, in batches of {@link #MAX_BATCH}. */
    public CompletionStage<Void> deflate(long[] frames) {
        return sendAll(VirtioBalloon.DEFLATE_QUEUE, frames, 0);
    }

    private CompletionStage<Void> sendAll(int queue, long[] frames, int from) {
        if (from >= frames.length) {
            return CompletableFuture.completedFuture(null);
        }
        int to = Math.min(frames.length, from + MAX_BATCH);
        return send(queue, java.util.Arrays.copyOfRange(frames, from, to))
                .thenCompose(v -> sendAll(queue, frames, to));
    }

    /** Give frames {@code [first, first + count)} to the host. */
    public CompletionStage<Void> inflate(long first, long count) {
        return transfer(inflate, VirtioBalloon.INFLATE_QUEUE, first, count);
    }

    /** Take frames {@code [first, first + count)} back from the host. */
    public CompletionStage<Void> deflate(long first, long count) {
        return transfer(deflate, VirtioBalloon.DEFLATE_QUEUE, first, count);
    }

    /** Offer the given frame numbers, exactly as given, in one request on queue {@code queue} (0 or 1). */
    public CompletionStage<Void> send(int queue, long[] frames) {
        ByteBuffer pfns = ByteBuffer.allocate(4 * frames.length).order(ByteOrder.LITTLE_ENDIAN);
        for (long f : frames) {
            pfns.putInt((int) f);
        }
        memory.current().write(new GuestAddress(GuestLayout.PFN_BUFFER), pfns.array());
        SplitQueueDriver q = queue == VirtioBalloon.INFLATE_QUEUE ? inflate : deflate;
        q.add(List.of(new SplitQueueDriver.Buffer(GuestLayout.PFN_BUFFER, 4 * frames.length, false)));
        // The device answers the notify once the host handled the frames: the chain is back by then.
        return transport.notify(queue).thenApply(v -> {
            if (q.pollUsed().isEmpty()) {
                throw new ScriptedGuestException("virtio-balloon did not hand back the " + (queue == 0 ? "inflate"
                        : "deflate") + " request of " + frames.length + " frames (the device needs a reset)");
            }
            return null;
        });
    }

    private CompletionStage<Void> transfer(SplitQueueDriver q, int queue, long first, long count) {
        if (count <= 0) {
            return CompletableFuture.completedFuture(null);
        }
        int n = (int) Math.min(count, MAX_BATCH);
        long[] frames = new long[n];
        for (int i = 0; i < n; i++) {
            frames[i] = first + i;
        }
        return send(queue, frames).thenCompose(v -> transfer(q, queue, first + n, count - n));
    }

    /** Tell the device how many pages the driver holds. */
    public CompletionStage<Void> setActual(long pages) {
        return transport.writeConfig(VirtioBalloon.CONFIG_ACTUAL, 4, pages);
    }

    /** Whether the device asked for statistics (handed back the last statistics buffer). */
    public boolean statisticsRequested() {
        return hasStatistics() && stats.pollUsed().isPresent();
    }

    /** Offer a statistics buffer: {@code totalBytes} of memory, {@code freeBytes} of them free. */
    public CompletionStage<Void> reportStatistics(long totalBytes, long freeBytes) {
        long[] values = {0, 0, 0, 0, freeBytes, totalBytes, freeBytes, 0};
        ByteBuffer b = ByteBuffer.allocate(10 * STAT_TAGS).order(ByteOrder.LITTLE_ENDIAN);
        for (int tag = 0; tag < STAT_TAGS; tag++) {
            b.putShort((short) tag).putLong(values[tag]);
        }
        memory.current().write(new GuestAddress(GuestLayout.STATS_BUFFER), b.array());
        stats.add(List.of(new SplitQueueDriver.Buffer(GuestLayout.STATS_BUFFER, b.capacity(), false)));
        return transport.notify(VirtioBalloon.STATS_QUEUE);
    }
}
