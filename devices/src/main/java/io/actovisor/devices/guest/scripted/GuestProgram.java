package io.actovisor.devices.guest.scripted;

import java.time.Duration;
import java.util.Optional;
import java.util.concurrent.CompletionStage;

/**
 * What a scripted guest runs: {@link #boot} once, then {@link #round} again and again, each after the delay the
 * previous round asked for, until a round answers empty (the guest halts). A program that throws, or whose stage
 * fails, stops its guest with that exception as the guest's failure; the VM and the JVM go on.
 */
public interface GuestProgram {
    /** The program's name, shown in the VM's guest status and log. */
    String name();

    /** Set up drivers; runs once, before the first round. */
    CompletionStage<Void> boot(GuestMachine machine);

    /**
     * Round {@code round} (from 1); completes with the delay before the next round, or empty when the program is
     * done and the guest halts.
     */
    CompletionStage<Optional<Duration>> round(GuestMachine machine, long round);
}
