package io.actovisor.benchmarks;

import io.actovisor.devices.balloon.VirtioBalloon;
import io.actovisor.devices.guest.scripted.BalloonDriver;
import io.actovisor.devices.guest.scripted.GuestMachine;
import io.actovisor.devices.guest.scripted.GuestProgram;
import io.actovisor.devices.guest.scripted.ScriptedGuestException;
import io.actovisor.devices.guest.scripted.SplitQueueDriver;
import io.actovisor.memory.GuestAddress;
import io.actovisor.memory.GuestMemory;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ConcurrentLinkedQueue;

/**
 * The guest side of {@link InflateEndToEnd}: a virtio-balloon driver that gives frames to the host (or takes them
 * back) in buffers of {@code batch} frames, one buffer in flight as Linux's driver sends them: write the PFNs into
 * guest RAM, offer the buffer on the queue, notify, and send the next buffer once the device has handed this one
 * back (which it does after the balloon answered: it has recorded the frames, and its discard worker runs or has run the
 * discard). The benchmark hands it
 * {@link Job}s; each completes with the nanoseconds from the first buffer posted to the last buffer handed back,
 * one value per {@code perBuffer} buffers (all buffers in one value when it is 0).
 */
final class InflateProgram implements GuestProgram {
    /** Where the PFN buffers go: the work area at 1 MiB (up to 64 KiB of PFNs). */
    static final long PFNS = 1L << 20;

    /** Inflate (or deflate) {@code frames} frames from {@code first} in buffers of {@code batch} frames. */
    record Job(boolean inflate, long first, long frames, int batch, int perBuffer,
            CompletableFuture<List<Long>> done) {
    }

    private final boolean mustTellHost;
    private final ConcurrentLinkedQueue<Job> jobs = new ConcurrentLinkedQueue<>();
    final CompletableFuture<Void> ready = new CompletableFuture<>();
    private BalloonDriver driver;
    private GuestMemory memory;
    /** When the last job's first buffer was posted ({@link System#nanoTime()}). */
    private volatile long startedAt;

    /** {@code mustTellHost}: negotiate VIRTIO_BALLOON_F_MUST_TELL_HOST (which coordinated discard needs). */
    InflateProgram(boolean mustTellHost) {
        this.mustTellHost = mustTellHost;
    }

    long startedAt() {
        return startedAt;
    }

    CompletableFuture<List<Long>> submit(boolean inflate, long first, long frames, int batch, int perBuffer) {
        Job job = new Job(inflate, first, frames, batch, perBuffer, new CompletableFuture<>());
        jobs.add(job);
        return job.done();
    }

    @Override
    public String name() {
        return "inflate-benchmark";
    }

    @Override
    public CompletionStage<Void> boot(GuestMachine machine) {
        memory = machine.memory();
        driver = new BalloonDriver(memory, machine.device("balloon").orElseThrow(() ->
                new ScriptedGuestException("the benchmark VM has no balloon")), 0);
        long features = mustTellHost ? VirtioBalloon.F_MUST_TELL_HOST : 0;
        return driver.transport().initialize(VirtioBalloon.DEVICE_ID, features, List.of(driver.queue(0),
                driver.queue(1), driver.queue(2))).thenAccept(accepted -> {
                    if (mustTellHost && (accepted & VirtioBalloon.F_MUST_TELL_HOST) == 0) {
                        throw new ScriptedGuestException("the device did not accept MUST_TELL_HOST");
                    }
                    ready.complete(null);
                });
    }

    @Override
    public CompletionStage<Optional<Duration>> round(GuestMachine machine, long round) {
        Job job = jobs.poll();
        if (job == null) { // idle: look again shortly (the clock starts at the first buffer, not here)
            return CompletableFuture.completedFuture(Optional.of(Duration.ofMillis(1)));
        }
        List<Long> times = new ArrayList<>();
        long start = System.nanoTime();
        startedAt = start;
        return send(job, 0, start, 0, times).handle((v, failure) -> {
            if (failure != null) {
                job.done().completeExceptionally(failure);
            } else {
                job.done().complete(times);
            }
            return Optional.of(Duration.ZERO);
        });
    }

    private CompletionStage<Void> send(Job job, long sent, long since, int buffers, List<Long> times) {
        if (sent >= job.frames()) {
            if (job.perBuffer() == 0 || buffers % job.perBuffer() != 0) {
                times.add(System.nanoTime() - since);
            }
            return CompletableFuture.completedFuture(null);
        }
        int n = (int) Math.min(job.batch(), job.frames() - sent);
        ByteBuffer pfns = ByteBuffer.allocate(4 * n).order(ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < n; i++) {
            pfns.putInt((int) (job.first() + sent + i));
        }
        memory.write(new GuestAddress(PFNS), pfns.array());
        int queue = job.inflate() ? VirtioBalloon.INFLATE_QUEUE : VirtioBalloon.DEFLATE_QUEUE;
        SplitQueueDriver q = driver.queue(queue);
        q.add(List.of(new SplitQueueDriver.Buffer(PFNS, 4 * n, false)));
        return driver.transport().notify(queue).thenCompose(v -> {
            if (q.pollUsed().isEmpty()) {
                throw new ScriptedGuestException("virtio-balloon did not hand back a buffer of " + n + " frames");
            }
            long since2 = since;
            if (job.perBuffer() > 0 && (buffers + 1) % job.perBuffer() == 0) {
                long now = System.nanoTime();
                times.add(now - since);
                since2 = now;
            }
            return send(job, sent + n, since2, buffers + 1, times);
        });
    }
}
