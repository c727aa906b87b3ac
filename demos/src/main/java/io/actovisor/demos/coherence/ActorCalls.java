package io.actovisor.demos.coherence;

import io.actovisor.actors.memory.AddressSpaceActor;
import io.actovisor.actors.vfio.ContainerDmaActor;
import io.actovisor.actors.vfio.VfioContainerActor;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.MemoryRegion;
import java.util.List;
import java.time.Duration;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.RecipientRef;
import org.apache.pekko.actor.typed.javadsl.AskPattern;

/** Blocking asks for the scenarios, which drive an actor tree step by step from one thread. */
final class ActorCalls {
    private final ActorSystem<?> system;
    private final Duration timeout;

    ActorCalls(ActorSystem<?> system, Duration timeout) {
        this.system = system;
        this.timeout = timeout;
    }

    <Q, R> R ask(RecipientRef<Q> to, Function<ActorRef<R>, Q> message) {
        CompletionStage<R> answer = AskPattern.ask(to, message::apply, timeout, system.scheduler());
        try {
            return answer.toCompletableFuture().get(timeout.toMillis() + 1000, TimeUnit.MILLISECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted", e);
        } catch (Exception e) {
            throw new IllegalStateException("no answer from " + to + ": " + e, e);
        }
    }

    /** Commit all of {@code ram} as the RAM region "ram" at guest-physical {@code base}; a refusal is thrown. */
    void addRam(ActorRef<AddressSpaceActor.Command> memory, long base, HostMemory ram) {
        AddressSpaceActor.CommitResult committed = ask(memory, r -> new AddressSpaceActor.Commit(List.of(
                new AddressSpaceActor.AddRegion(MemoryRegion.ram("ram", AddressRange.of(base, ram.size()), ram,
                        0))), r));
        if (committed instanceof AddressSpaceActor.CommitFailed failed) {
            throw new IllegalStateException("guest RAM was refused: " + failed.reason());
        }
    }

    /** Ask the container's DMA side; the answer may be a {@link ContainerDmaActor.DmaFailed}. */
    <R> R dma(ActorRef<VfioContainerActor.Command> container,
            Function<ActorRef<R>, ContainerDmaActor.Request> request) {
        return ask(container, (ActorRef<R> r) -> new VfioContainerActor.Dma(request.apply(r)));
    }

    /** Ask the container's DMA side for a {@code success}; a failure is thrown here. */
    <R, S extends R> S dma(ActorRef<VfioContainerActor.Command> container,
            Function<ActorRef<R>, ContainerDmaActor.Request> request, Class<S> success) {
        R result = dma(container, request);
        if (result instanceof ContainerDmaActor.DmaFailed failed) {
            throw new IllegalStateException(failed.reason());
        }
        return success.cast(result);
    }

    /** Stop the system and wait for every actor's PostStop. */
    static void terminate(ActorSystem<?> system) {
        system.terminate();
        try {
            system.getWhenTerminated().toCompletableFuture().get(30, TimeUnit.SECONDS);
        } catch (Exception e) {
            throw new IllegalStateException("the scenario's actor system did not stop", e);
        }
    }
}
