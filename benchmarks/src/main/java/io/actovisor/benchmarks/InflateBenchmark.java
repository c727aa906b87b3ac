package io.actovisor.benchmarks;

import io.actovisor.actors.discard.DiscardMode;
import io.actovisor.actors.discard.DiscardManager;
import io.actovisor.actors.balloon.BalloonActor;
import io.actovisor.actors.balloon.BalloonSettings;
import io.actovisor.actors.balloon.FrameRuns;
import io.actovisor.actors.memory.AddressSpaceActor;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.GuestAddress;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.MemoryRegion;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Props;
import org.apache.pekko.actor.typed.javadsl.AskPattern;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

/**
 * Balloon inflate on real memory: 256 MiB of populated guest RAM given up in 4 KiB frames, in batches of
 * {@code batch} frames per Inflate as a virtio driver sends them, through BalloonActor to HostMemory.discard.
 * One operation = all 65536 frames; pages/s = 65536 / (seconds per operation).
 */
@State(Scope.Benchmark)
@Fork(1)
@Warmup(iterations = 3)
@Measurement(iterations = 10)
@BenchmarkMode(Mode.SingleShotTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
public class InflateBenchmark {
    static final long SIZE = 256L << 20;
    static final int FRAMES = (int) (SIZE / 4096);

    /** Frames per Inflate: 256 is what Linux's virtio-balloon driver puts in one buffer. */
    @Param({"256", "4096"})
    int batch;

    /**
     * {@code sequential}: one Inflate in flight, as Linux's virtio-balloon driver sends them (it waits for the host
     * to return each buffer); {@code pipelined}: every batch sent before the first answer is awaited, as a device
     * model that drains several available buffers at once would, which shows the actor's own cost per batch;
     * {@code direct}: no actor, the same coalescing and {@code HostMemory.discard} calls on the benchmark thread,
     * which separates the cost of the Java and JNA path from the cost of the actor hand-offs; {@code executor}: the
     * same calls, one batch at a time, on a plain single-thread executor the benchmark thread waits for: a thread
     * hand-off without actors, which shows what running the discard off the caller's thread costs by itself.
     */
    @Param({"sequential", "pipelined", "direct", "executor"})
    String mode;

    private ActorSystem<Void> system;
    private ActorRef<DiscardManager.Command> discard;
    private ActorRef<BalloonActor.Command> balloon;
    private HostMemory memory;
    private long[][] batches;
    private ExecutorService executor;

    @Setup(Level.Trial)
    public void setUp() {
        memory = HostMemory.anonymous("bench-inflate", SIZE);
        executor = Executors.newSingleThreadExecutor();
        system = Trees.system("inflate");
        ActorRef<AddressSpaceActor.Command> space = system.systemActorOf(AddressSpaceActor.create("bench"), "memory",
                Props.empty());
        Trees.ask(system, space, (ActorRef<AddressSpaceActor.CommitResult> r) -> new AddressSpaceActor.Commit(
                List.of(new AddressSpaceActor.AddRegion(MemoryRegion.ram("ram", GuestAddress.ZERO, memory))), r));
        discard = system.systemActorOf(DiscardManager.create("bench", BalloonSettings.DEFAULT.drainTimeout()),
                "discard", DiscardManager.DISPATCHER);
        balloon = system.systemActorOf(BalloonActor.create("bench", space, BalloonSettings.DEFAULT, discard), "balloon",
                BalloonActor.DISPATCHER);
        batches = new long[FRAMES / batch][batch];
        for (int b = 0; b < batches.length; b++) {
            for (int i = 0; i < batch; i++) {
                batches[b][i] = (long) b * batch + i;
            }
        }
    }

    /** Fault every page back in and take the frames back, so each operation discards 256 MiB of resident pages. */
    @Setup(Level.Invocation)
    public void refill() {
        if (throughBalloon()) { // the other modes never tell the balloon about the frames
            for (long[] frames : batches) {
                Trees.ask(system, balloon, (ActorRef<BalloonActor.DeflateResult> r) ->
                        new BalloonActor.Deflate(frames, r));
            }
        }
        memory.populate(0, memory.size());
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        Trees.terminate(system);
        executor.shutdown();
        memory.close();
    }

    private boolean throughBalloon() {
        return mode.equals("sequential") || mode.equals("pipelined");
    }

    private long discardDirectly(long[] frames) {
        long pages = 0;
        for (AddressRange run : FrameRuns.coalesce(frames)) {
            memory.discard(run.base(), run.size());
            pages += run.size() / FrameRuns.FRAME_SIZE;
        }
        return pages;
    }

    @Benchmark
    public long inflate256MiB() throws Exception {
        long discarded = 0;
        if (mode.equals("direct")) {
            for (long[] frames : batches) {
                discarded += discardDirectly(frames);
            }
        } else if (mode.equals("executor")) {
            for (long[] frames : batches) {
                discarded += executor.submit(() -> discardDirectly(frames)).get();
            }
        } else if (mode.equals("pipelined")) {
            List<CompletableFuture<BalloonActor.InflateResult>> answers = new ArrayList<>(batches.length);
            for (long[] frames : batches) {
                answers.add(AskPattern.<BalloonActor.Command, BalloonActor.InflateResult>ask(balloon,
                        reply -> new BalloonActor.Inflate(frames, reply), Trees.TIMEOUT, system.scheduler())
                        .toCompletableFuture());
            }
            for (CompletableFuture<BalloonActor.InflateResult> answer : answers) {
                discarded += answer.join().pagesDiscarded();
            }
        } else {
            for (long[] frames : batches) {
                BalloonActor.InflateResult r = Trees.ask(system, balloon,
                        (ActorRef<BalloonActor.InflateResult> reply) -> new BalloonActor.Inflate(frames, reply));
                discarded += r.pagesDiscarded();
            }
        }
        if (discarded != FRAMES) {
            throw new IllegalStateException("discarded " + discarded + " of " + FRAMES + " pages");
        }
        return discarded;
    }
}
