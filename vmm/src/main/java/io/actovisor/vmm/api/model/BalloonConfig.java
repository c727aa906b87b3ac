package io.actovisor.vmm.api.model;

/**
 * The balloon device as configured, Firecracker's {@code /balloon} fields.
 *
 * @param amountMib             the target: memory the balloon takes from the guest, MiB
 * @param deflateOnOom          whether the guest may deflate when it runs out of memory
 * @param statsPollingIntervalS seconds between statistics requests to the guest
 */
public record BalloonConfig(long amountMib, boolean deflateOnOom, long statsPollingIntervalS) {
}
