package io.actovisor.vmm.api.model;

/**
 * {@code PATCH /balloon/statistics}.
 *
 * @param statsPollingIntervalS seconds between statistics requests to the guest, at least 1
 */
public record BalloonStatsUpdate(long statsPollingIntervalS) {
}
