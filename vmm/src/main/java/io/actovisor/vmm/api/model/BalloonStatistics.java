package io.actovisor.vmm.api.model;

import com.fasterxml.jackson.annotation.JsonInclude;

/**
 * {@code GET /balloon/statistics}: Firecracker's fields; the guest's values are absent until its driver reported
 * them. Then the device's counters.
 */
@JsonInclude(JsonInclude.Include.NON_NULL)
public record BalloonStatistics(long targetPages, long actualPages, long targetMib, long actualMib, Long swapIn,
        Long swapOut, Long majorFaults, Long minorFaults, Long freeMemory, Long totalMemory, Long availableMemory,
        Long diskCaches, Long hugetlbAllocations, Long hugetlbFailures, long inflateCount, long deflateCount,
        long statsUpdates, long eventFails) {
}
