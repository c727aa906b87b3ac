package io.actovisor.actors.ask;

import java.util.concurrent.CompletionException;

/** The failures of {@code CompletionStage}s: a dependent stage sees its source's failure wrapped, once. */
public final class StageFailures {
    private StageFailures() {
    }

    /** What failed: {@code failure} without the {@link CompletionException} a dependent stage wraps it in. */
    public static Throwable cause(Throwable failure) {
        return failure instanceof CompletionException && failure.getCause() != null ? failure.getCause() : failure;
    }
}
