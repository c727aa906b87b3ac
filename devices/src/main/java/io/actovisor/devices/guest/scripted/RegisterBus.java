package io.actovisor.devices.guest.scripted;

import java.util.concurrent.CompletionStage;

/**
 * One device's register window as a driver sees it: the same reads and writes a vCPU's MMIO exit would make, at
 * offsets into the window. Accesses complete asynchronously (the device is an actor); a driver issues the next
 * access when the previous one completed, as a vCPU does. A device that cannot complete an access fails the stage
 * with a {@link ScriptedGuestException}.
 */
public interface RegisterBus {
    /** Read {@code size} bytes (1, 2, 4 or 8) at {@code offset}. */
    CompletionStage<Long> read(long offset, int size);

    /** Write the low {@code size} bytes of {@code value} at {@code offset}. */
    CompletionStage<Void> write(long offset, int size, long value);
}
