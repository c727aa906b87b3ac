package io.actovisor.benchmarks;

import io.actovisor.actors.balloon.BalloonActor;
import io.actovisor.actors.balloon.BalloonSettings;
import io.actovisor.actors.balloon.VirtioBalloonActor;
import io.actovisor.actors.discard.DiscardMode;
import io.actovisor.actors.vfio.IommuBackend;
import io.actovisor.actors.vfio.VfioContainerActor;
import io.actovisor.actors.vm.VmActor;
import io.actovisor.actors.vm.VmTopology;
import io.actovisor.devices.guest.scripted.GuestLayout;
import io.actovisor.devices.iommu.pinned.PinnedIommu;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.GuestAddress;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.MemoryRegion;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Props;

/**
 * Balloon inflate end to end (issue 21 item 1, issue 16 item 7): a VM ({@link VmActor}) with 2 MiB + 256 MiB of
 * RAM, a virtio-balloon and a scripted guest ({@link InflateProgram}) that gives the top 256 MiB to the host in
 * buffers of {@code batch} frames, one in flight: virtqueue buffers in guest RAM → VirtioBalloonActor →
 * BalloonActor → DiscardManager → madvise. The clock runs from the first buffer posted to the last discard
 * completed: the device hands a buffer back once the balloon has recorded its frames, and the balloon's discard
 * worker runs the {@code madvise} calls on its own thread (merged across buffers); the end is the later of the last
 * buffer handed back and the end of the worker's last run ({@link BalloonActor.Flushed}). Between repetitions the
 * guest deflates everything and the pages are faulted in again (not timed). {@link #WARMUP} repetitions of each
 * mode and batch run first, untimed, so that the measured ones see the JIT's compiled path.
 *
 * <p>Modes: {@code plain}, no VFIO; {@code coordinated}, one container on the {@code pinned} backend (real
 * io_uring long-term pins of all guest RAM) in coordinated discard mode with its group attached, so every 2 MiB
 * block is unmapped and unpinned by the container before the discard, and remapped on deflate (whose latency per
 * block is measured too).
 *
 * <p>In the same run: C's one coalesced madvise of 256 MiB ({@code madvise_bench}, compiled with gcc now), the same
 * single madvise from Java, and the bare round trip of {@link BareChain} (four hand-offs, default → blocking-io →
 * default dispatcher, no work). Plain {@code main}, one line per result:
 * {@code java -cp benchmarks.jar io.actovisor.benchmarks.InflateEndToEnd [repetitions [modes [batch]]]}
 * ({@code modes}: {@code plain,coordinated} by default; {@code batch}: 256 and 4096 by default).
 */
public final class InflateEndToEnd {
    static final long LOW = 2L << 20;
    static final long SIZE = 256L << 20;
    static final long FIRST_FRAME = LOW / 4096;
    static final long FRAMES = SIZE / 4096;
    static final long BLOCK_FRAMES = VfioContainerActor.DEFAULT_DISCARD_BLOCK_SIZE / 4096;
    /** Repetitions of each mode and batch before the measured ones (not timed). */
    static final int WARMUP = 15;

    private InflateEndToEnd() {
    }

    public static void main(String[] args) throws Exception {
        int reps = args.length > 0 ? Integer.parseInt(args[0]) : 10;
        List<Double> c = CBaselines.madviseCoalescedMillis();
        double cCoalesced = median(c);
        line("c-coalesced-madvise-256MiB", "ms", cCoalesced, "runs " + runs(c));
        double javaCoalesced = javaCoalescedMillis(reps);
        line("java-coalesced-madvise-256MiB", "ms", javaCoalesced, "");
        ActorSystem<Void> system = Trees.system("inflate-e2e");
        double bareUs;
        try {
            bareUs = bareRoundTripMicros(system, 3000);
        } finally {
            Trees.terminate(system);
        }
        line("bare-round-trip-4-hand-offs-p50", "us", bareUs, "");
        double plain256 = 0;
        List<String> modes = args.length > 1 ? List.of(args[1].split(",")) : List.of("plain", "coordinated");
        for (String mode : modes) {
            for (int batch : args.length > 2 ? List.of(Integer.parseInt(args[2])) : List.of(256, 4096)) {
                Result r = run(mode, batch, reps);
                line("inflate-" + mode + "-batch" + batch, "ms", r.inflateMs, "runs " + runs(r.runs));
                if (mode.equals("plain") && batch == 256) {
                    plain256 = r.inflateMs;
                    double floor = cCoalesced + (FRAMES / batch) * bareUs / 1000.0;
                    line("ratio-inflate-plain-batch256-to-floor", "x", r.inflateMs / floor,
                            "floor = C coalesced + 256 x bare round trip = " + fmt(floor) + " ms; target <= 1.25");
                    line("ratio-c-coalesced-to-inflate-plain-batch256", "x", cCoalesced / r.inflateMs,
                            "plain ratio to C coalesced (speed)");
                }
                if (mode.equals("plain") && batch == 4096) {
                    line("ratio-c-coalesced-to-inflate-plain-batch4096", "x", cCoalesced / r.inflateMs,
                            "target >= 0.8");
                }
                if (mode.equals("coordinated") && batch == 256) {
                    line("ratio-plain-to-coordinated-batch256", "x", plain256 / r.inflateMs,
                            "coordinated speed / no-VFIO speed; target >= 0.5");
                    line("deflate-remap-one-block-p50", "us", r.deflateP50Us, "");
                    line("deflate-remap-one-block-p99", "us", r.deflateP99Us, "of " + r.deflates + " blocks");
                }
            }
        }
    }

    private record Result(double inflateMs, List<Double> runs, double deflateP50Us, double deflateP99Us,
            int deflates) {
    }

    private static Result run(String mode, int batch, int reps) throws Exception {
        boolean coordinated = mode.equals("coordinated");
        HostMemory ram = HostMemory.anonymous("e2e-ram", LOW + SIZE);
        List<MemoryRegion> regions = List.of(MemoryRegion.ram("ram", GuestAddress.ZERO, ram),
                MemoryRegion.mmio("balloon-mmio", AddressRange.of(0xd0001000L, 4096), "balloon"));
        // The guest negotiates MUST_TELL_HOST in both modes, as Linux's driver does whenever the device offers it.
        InflateProgram program = new InflateProgram(true);
        AtomicReference<ActorRef<BalloonActor.Command>> balloon = new AtomicReference<>();
        List<VmTopology.Container> containers = coordinated
                ? List.of(new VmTopology.Container("c0", IommuBackend.shared(PinnedIommu.BACKEND,
                        () -> PinnedIommu.open(65535)), DiscardMode.COORDINATED,
                        VfioContainerActor.DEFAULT_DISCARD_BLOCK_SIZE))
                : List.of();
        List<VmTopology.Group> groups = coordinated
                ? List.of(new VmTopology.Group("g0", "c0", Optional.empty(), true)) : List.of();
        VmTopology topology = new VmTopology("e2e-" + mode + "-" + batch, List.of(ram), regions,
                Optional.of(BalloonSettings.DEFAULT), containers, groups, Optional.empty(),
                List.of(new VmTopology.Device("balloon", parts -> {
                    balloon.set(parts.balloon().orElseThrow());
                    return VirtioBalloonActor.create(parts.guestMemory(), parts.balloon().orElseThrow(),
                            Optional.of(parts.discardManager()), false, Duration.ofHours(1));
                }, VmTopology.Device.Role.VIRTIO_BALLOON)),
                Optional.of(new VmTopology.ScriptedGuest(() -> program, GuestLayout.of(64 << 10))));
        ActorSystem<Void> system = Trees.system("inflate-" + mode);
        try {
            ActorRef<VmActor.Command> vm = system.systemActorOf(VmActor.create(topology), "vm", Props.empty());
            VmActor.StartResult started = Trees.ask(system, vm, VmActor.Start::new);
            if (!(started instanceof VmActor.Started)) {
                throw new IllegalStateException("the benchmark VM did not start: " + started);
            }
            program.ready.get(60, TimeUnit.SECONDS);
            List<Double> inflates = new ArrayList<>();
            List<Double> deflates = new ArrayList<>();
            // Warm-up until the JIT has compiled the path, as JMH's warm-up iterations do for the other benchmarks:
            // in a 20-repetition run the batch-256 inflate fell from 64 ms (first) to 20-28 ms from the 14th on.
            int warmup = WARMUP;
            for (int i = 0; i < warmup + reps; i++) {
                ram.populate(LOW, SIZE);
                List<Long> t = program.submit(true, FIRST_FRAME, FRAMES, batch, 0).get(120, TimeUnit.SECONDS);
                long guestEnd = program.startedAt() + t.get(0);
                BalloonActor.Flushed flushed = Trees.ask(system, balloon.get(), BalloonActor.Flush::new);
                long inflateNs = Math.max(guestEnd, flushed.lastDiscardNanos()) - program.startedAt();
                // Every discard has completed: nothing of the 256 MiB may be resident now.
                long resident = ram.residentBytes(AddressRange.of(ram.base().value() + LOW, SIZE));
                if (resident != 0) {
                    throw new IllegalStateException(resident + " bytes of the inflated 256 MiB are still resident");
                }
                // Deflate block by block, one buffer per block: with a coordinated container each is a remap.
                List<Long> d = program.submit(false, FIRST_FRAME, FRAMES, (int) BLOCK_FRAMES, 1)
                        .get(120, TimeUnit.SECONDS);
                if (i >= warmup) {
                    inflates.add(inflateNs / 1e6);
                    d.forEach(ns -> deflates.add(ns / 1e3));
                }
            }
            BalloonActor.BalloonStatus status = Trees.ask(system, balloon.get(), BalloonActor.GetStatus::new);
            line("inflate-" + mode + "-batch" + batch + "-discard-calls", "calls", (double) status.discards()
                    / (warmup + reps), "madvise calls per 256 MiB inflate (merged across buffers when deferred)");
            Trees.ask(system, vm, VmActor.Shutdown::new);
            deflates.sort(null);
            return new Result(median(inflates), inflates, percentile(deflates, 0.50), percentile(deflates, 0.99),
                    deflates.size());
        } finally {
            Trees.terminate(system);
        }
    }

    private static double javaCoalescedMillis(int reps) {
        List<Double> runs = new ArrayList<>();
        try (HostMemory m = HostMemory.anonymous("e2e-java-madvise", SIZE)) {
            for (int i = 0; i < reps + 2; i++) {
                m.populate(0, SIZE);
                long t0 = System.nanoTime();
                m.discard(0, SIZE);
                if (i >= 2) {
                    runs.add((System.nanoTime() - t0) / 1e6);
                }
            }
        }
        return median(runs);
    }

    /** p50 of the four-hand-off bare chain, caller → default → blocking-io → default → caller. */
    static double bareRoundTripMicros(ActorSystem<?> system, int runs) {
        ActorRef<BareChain.Hop> a = BareChain.relay(system, "bare-a", Props.empty());
        ActorRef<BareChain.Hop> b = BareChain.relay(system, "bare-b", VfioContainerActor.DISPATCHER);
        BareChain chain = new BareChain(system, List.of(a, b, a));
        List<Double> times = new ArrayList<>();
        for (int i = 0; i < runs + 500; i++) {
            long t0 = System.nanoTime();
            chain.run();
            if (i >= 500) {
                times.add((System.nanoTime() - t0) / 1e3);
            }
        }
        times.sort(null);
        return percentile(times, 0.5);
    }

    static double median(List<Double> values) {
        List<Double> sorted = new ArrayList<>(values);
        sorted.sort(null);
        return percentile(sorted, 0.5);
    }

    static double percentile(List<Double> sorted, double p) {
        if (sorted.isEmpty()) {
            return Double.NaN;
        }
        return sorted.get(Math.min(sorted.size() - 1, (int) Math.floor(p * sorted.size())));
    }

    private static String runs(List<Double> values) {
        return values.stream().map(v -> String.format(Locale.ROOT, "%.1f", v))
                .collect(java.util.stream.Collectors.joining(", ", "[", "]"));
    }

    private static String fmt(double v) {
        return String.format(Locale.ROOT, "%.3f", v);
    }

    private static void line(String name, String unit, double value, String note) {
        System.out.println("RESULT " + name + " " + fmt(value) + " " + unit + (note.isEmpty() ? "" : "  # " + note));
    }
}
