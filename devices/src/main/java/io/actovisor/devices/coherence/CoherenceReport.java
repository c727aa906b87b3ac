package io.actovisor.devices.coherence;

import java.util.List;
import java.util.OptionalLong;

/**
 * What a {@link CoherenceAudit} found.
 *
 * @param pagesChecked  mapped pages compared
 * @param incoherent    pages where the device and the CPU read different bytes, in guest-address order
 * @param pfnMismatches pages whose frame now differs from the one pinned at map time (where pagemap is readable and
 *                      a ledger was taken), including pages whose bytes still happen to agree
 */
public record CoherenceReport(long pagesChecked, List<IncoherentPage> incoherent, List<Long> pfnMismatches) {
    public CoherenceReport {
        incoherent = List.copyOf(incoherent);
        pfnMismatches = List.copyOf(pfnMismatches);
    }

    /** Whether the device and the CPU agree on every mapped page. */
    public boolean coherent() {
        return incoherent.isEmpty() && pfnMismatches.isEmpty();
    }

    /**
     * One page the device and the CPU disagree on.
     *
     * @param guestAddress the page's guest-physical address (= IOVA)
     * @param offset       the first differing byte's offset in the page
     * @param deviceByte   what the device reads there
     * @param cpuByte      what the CPU reads there
     * @param pinnedPfn    the frame pinned at map time, if recorded
     * @param cpuPfn       the frame the CPU maps now, if readable
     */
    public record IncoherentPage(long guestAddress, int offset, byte deviceByte, byte cpuByte, OptionalLong pinnedPfn,
            OptionalLong cpuPfn) {
    }
}
