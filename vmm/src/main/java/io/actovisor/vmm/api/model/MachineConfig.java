package io.actovisor.vmm.api.model;

/**
 * {@code GET /machine-config}: Firecracker's machine configuration, fixed at {@code run}.
 *
 * @param vcpuCount       vCPUs
 * @param memSizeMib      guest RAM in MiB
 * @param smt             simultaneous multithreading: never exposed
 * @param trackDirtyPages dirty page tracking: not used
 */
public record MachineConfig(int vcpuCount, long memSizeMib, boolean smt, boolean trackDirtyPages) {
}
