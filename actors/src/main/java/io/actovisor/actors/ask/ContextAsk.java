package io.actovisor.actors.ask;

import java.time.Duration;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.RecipientRef;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.japi.function.Function;
import org.apache.pekko.japi.function.Function2;
import org.apache.pekko.util.Timeout;
import scala.reflect.ClassTag;

/**
 * Ask from inside an actor, as {@code ActorContext.ask} of the Java DSL does, but with the answer turned into the
 * actor's own message on the thread that answered, which only enqueues it.
 *
 * <p>Why: the Java DSL's {@code ask} pipes a {@code CompletionStage} built on a Scala future, whose {@code handle}
 * runs asynchronously on {@code ForkJoinPool.commonPool()}; on a machine with 2 CPUs that pool has a parallelism of
 * 1, so {@code CompletableFuture} starts a <b>new thread for every answer</b> (its {@code ThreadPerTaskExecutor}).
 * A JFR profile of the balloon's inflate showed some 700 thread starts a second, one per ask, each an {@code mmap}
 * of a stack that also contends with the balloon's {@code madvise}. The Scala DSL's {@code ask} completes on the
 * answering thread ({@code ExecutionContexts.parasitic}); the semantics are otherwise the same: a temporary reply
 * address per ask, the answer or a timeout failure exactly once, a late answer goes to dead letters.
 */
public final class ContextAsk {
    private ContextAsk() {
    }

    /**
     * Send {@code createRequest}'s request to {@code target} and deliver {@code applyToResponse}'s message to this
     * actor: with the answer (failure {@code null}), or with the failure (answer {@code null}) when no answer of
     * type {@code resClass} arrived within {@code timeout}. The arguments are those of {@code ActorContext.ask}.
     */
    public static <T, Req, Res> void ask(ActorContext<T> context, Class<Res> resClass, RecipientRef<Req> target,
            Duration timeout, Function<ActorRef<Res>, Req> createRequest,
            Function2<Res, Throwable, T> applyToResponse) {
        context.asScala().<Req, Res>ask(target, ref -> call(() -> createRequest.apply(ref)), result -> call(() ->
                result.isSuccess() ? applyToResponse.apply(result.get(), null)
                        : applyToResponse.apply(null, result.failed().get())),
                Timeout.create(timeout), ClassTag.apply(resClass));
    }

    private interface Call<V> {
        V get() throws Exception;
    }

    /** The Java DSL's functions may throw checked exceptions; they propagate unchanged, as there. */
    private static <V> V call(Call<V> call) {
        try {
            return call.get();
        } catch (Exception e) {
            throw ContextAsk.<RuntimeException>sneaky(e);
        }
    }

    @SuppressWarnings("unchecked")
    private static <E extends Exception> E sneaky(Exception e) throws E {
        throw (E) e;
    }
}
