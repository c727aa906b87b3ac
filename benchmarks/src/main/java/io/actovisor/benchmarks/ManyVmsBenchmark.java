package io.actovisor.benchmarks;

import io.actovisor.actors.balloon.BalloonSettings;
import io.actovisor.actors.balloon.VirtioBalloonActor;
import io.actovisor.actors.events.ActovisorEvent;
import io.actovisor.actors.vfio.IommuBackend;
import io.actovisor.actors.vm.VmActor;
import io.actovisor.actors.vm.VmTopology;
import io.actovisor.devices.guest.scripted.GuestLayout;
import io.actovisor.devices.guest.scripted.WorkloadProgram;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.GuestAddress;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.MemoryRegion;
import java.lang.management.ManagementFactory;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.Props;
import org.apache.pekko.actor.typed.SpawnProtocol;
import org.apache.pekko.actor.typed.Terminated;
import org.apache.pekko.actor.typed.eventstream.EventStream;
import org.apache.pekko.actor.typed.javadsl.AskPattern;
import org.apache.pekko.actor.typed.javadsl.Behaviors;

/**
 * Many VMs in one JVM, each with a scripted guest: 4 MiB of RAM, a virtio-balloon and a VFIO group on the model
 * IOMMU (which maps all 4 MiB), the workload program with a 64 KiB work area and one round a minute. It starts N VMs
 * (64 starts in flight), waits until every guest printed its first round, and stops them all; it prints the heap per
 * VM (used heap after full GCs, minus the same before), the start rate and the stop time. Not JMH: one run, one
 * number each. {@code java -Xmx2g -cp benchmarks.jar io.actovisor.benchmarks.ManyVmsBenchmark 10000}
 */
public final class ManyVmsBenchmark {
    private static final long RAM = 4L << 20;
    private static final long BALLOON_BASE = 0xd0001000L;
    private static final int IN_FLIGHT = 64;

    private ManyVmsBenchmark() {
    }

    static VmTopology topology(String name) {
        HostMemory ram = HostMemory.anonymous(name + "-ram", RAM);
        List<MemoryRegion> regions = List.of(MemoryRegion.ram("ram", GuestAddress.ZERO, ram),
                MemoryRegion.mmio("balloon-mmio", AddressRange.of(BALLOON_BASE, 4096), "balloon"));
        return new VmTopology(name, List.of(ram), regions, Optional.of(BalloonSettings.DEFAULT),
                List.of(new VmTopology.Container("c0", IommuBackend.model(65535))),
                List.of(new VmTopology.Group("g0", "c0", false, true)), Optional.empty(),
                List.of(new VmTopology.Device("balloon", c -> VirtioBalloonActor.create(c.guestMemory(),
                        c.balloon().orElseThrow(), true, Duration.ofSeconds(30)))),
                Optional.of(new VmTopology.ScriptedGuest(() -> new WorkloadProgram(Duration.ofMinutes(1)),
                        new GuestLayout(GuestLayout.WORK_BASE, 64 << 10))));
    }

    private static long usedHeap() {
        for (int i = 0; i < 3; i++) {
            System.gc();
        }
        return ManagementFactory.getMemoryMXBean().getHeapMemoryUsage().getUsed();
    }

    /** Counts guests' first rounds and stopped VMs. */
    private static Behavior<Object> counter(AtomicInteger rounds, AtomicInteger stopped) {
        return Behaviors.receive((context, message) -> {
            if (message instanceof ActovisorEvent.GuestConsoleLine line && line.line().startsWith("round 1:")) {
                rounds.incrementAndGet();
            } else if (message instanceof ActorRef<?> vm) {
                context.watch(vm);
            }
            return Behaviors.same();
        }, (context, signal) -> {
            if (signal instanceof Terminated) {
                stopped.incrementAndGet();
            }
            return Behaviors.same();
        });
    }

    public static void main(String[] args) throws Exception {
        int n = args.length > 0 ? Integer.parseInt(args[0]) : 1000;
        // Thousands of VMs log a few lines each at INFO: only warnings are worth printing here.
        ((ch.qos.logback.classic.Logger) org.slf4j.LoggerFactory.getLogger(org.slf4j.Logger.ROOT_LOGGER_NAME))
                .setLevel(ch.qos.logback.classic.Level.WARN);
        ActorSystem<SpawnProtocol.Command> system = ActorSystem.create(SpawnProtocol.create(), "many-vms",
                com.typesafe.config.ConfigFactory.parseString("pekko.loglevel = WARNING")
                        .withFallback(com.typesafe.config.ConfigFactory.load()));
        Duration timeout = Duration.ofSeconds(60);
        AtomicInteger rounds = new AtomicInteger();
        AtomicInteger stopped = new AtomicInteger();
        ActorRef<Object> counter = AskPattern.<SpawnProtocol.Command, ActorRef<Object>>ask(system,
                r -> new SpawnProtocol.Spawn<>(counter(rounds, stopped), "counter", Props.empty(), r), timeout,
                system.scheduler()).toCompletableFuture().get();
        system.eventStream().tell(new EventStream.Subscribe<>(ActovisorEvent.GuestConsoleLine.class,
                counter.narrow()));
        long heapBefore = usedHeap();
        List<ActorRef<VmActor.Command>> vms = new ArrayList<>(n);
        Semaphore inFlight = new Semaphore(IN_FLIGHT);
        AtomicInteger failed = new AtomicInteger();
        long start = System.nanoTime();
        for (int i = 0; i < n; i++) {
            String name = "vm-" + i;
            ActorRef<VmActor.Command> vm = AskPattern.<SpawnProtocol.Command, ActorRef<VmActor.Command>>ask(system,
                    r -> new SpawnProtocol.Spawn<>(VmActor.create(topology(name)), name, Props.empty(), r), timeout,
                    system.scheduler()).toCompletableFuture().get();
            counter.tell(vm);
            vms.add(vm);
            inFlight.acquire();
            CompletionStage<VmActor.StartResult> started = AskPattern.ask(vm, VmActor.Start::new, timeout,
                    system.scheduler());
            started.whenComplete((result, failure) -> {
                if (!(result instanceof VmActor.Started)) {
                    failed.incrementAndGet();
                }
                inFlight.release();
            });
        }
        inFlight.acquire(IN_FLIGHT);
        double startSeconds = (System.nanoTime() - start) / 1e9;
        while (rounds.get() < n - failed.get() && System.nanoTime() - start < TimeUnit.MINUTES.toNanos(10)) {
            Thread.sleep(100);
        }
        double roundSeconds = (System.nanoTime() - start) / 1e9;
        long heapAfter = usedHeap();
        long stopStart = System.nanoTime();
        vms.forEach(vm -> vm.tell(new VmActor.Shutdown(system.ignoreRef())));
        while (stopped.get() < n && System.nanoTime() - stopStart < TimeUnit.MINUTES.toNanos(10)) {
            Thread.sleep(10);
        }
        double stopSeconds = (System.nanoTime() - stopStart) / 1e9;
        System.out.printf("VMs: %d started (%d failed) in %.2f s: %.0f VMs/s%n", n - failed.get(), failed.get(),
                startSeconds, (n - failed.get()) / startSeconds);
        System.out.printf("first round printed by %d guests after %.2f s%n", rounds.get(), roundSeconds);
        System.out.printf("heap: %.1f MiB used for %d VMs: %.1f KiB per VM (max heap %d MiB)%n",
                (heapAfter - heapBefore) / 1048576.0, n, (heapAfter - heapBefore) / 1024.0 / n,
                Runtime.getRuntime().maxMemory() >> 20);
        System.out.printf("stop: %d VMs stopped in %.2f s%n", stopped.get(), stopSeconds);
        system.terminate();
        system.getWhenTerminated().toCompletableFuture().get(60, TimeUnit.SECONDS);
    }
}
