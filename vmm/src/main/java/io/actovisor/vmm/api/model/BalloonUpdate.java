package io.actovisor.vmm.api.model;

/**
 * {@code PATCH /balloon}.
 *
 * @param amountMib the new target in MiB, 0 to the guest's memory
 */
public record BalloonUpdate(long amountMib) {
}
