package io.actovisor.vmm.api.model;

import java.util.List;

/**
 * {@code GET /balloon}: Firecracker's three fields, then actovisor's discard accounting.
 *
 * @param amountMib             the target in MiB
 * @param deflateOnOom          whether the guest may deflate when it runs out of memory
 * @param statsPollingIntervalS seconds between statistics requests to the guest
 * @param targetBytes           the target in bytes
 * @param actualBytes           memory the guest has given up
 * @param inhibitors            holders that disable uncoordinated discards (attached VFIO groups)
 * @param inhibitorHolders      their names
 * @param discards              discards done
 * @param pagesDiscarded        pages discarded
 * @param discardsSkipped       discards skipped because a holder disabled them
 * @param pagesSkipped          pages not discarded because a holder disabled discards
 * @param unsafeIgnoreInhibitor whether the balloon discards despite the inhibitors (VFIO devices then read stale memory; only for reproducing that)
 */
public record Balloon(long amountMib, boolean deflateOnOom, long statsPollingIntervalS, long targetBytes,
        long actualBytes, int inhibitors, List<String> inhibitorHolders, long discards, long pagesDiscarded,
        long discardsSkipped, long pagesSkipped, boolean unsafeIgnoreInhibitor) {
    public Balloon {
        inhibitorHolders = List.copyOf(inhibitorHolders);
    }
}
