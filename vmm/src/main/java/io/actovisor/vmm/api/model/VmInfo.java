package io.actovisor.vmm.api.model;

/**
 * {@code GET /vm}: the running VM.
 *
 * @param name       the VM's name
 * @param state      as in {@link InstanceInfo#state()}
 * @param vcpuCount  vCPUs
 * @param memSizeMib guest RAM in MiB
 * @param uptimeMs   milliseconds since the VM started
 * @param guest      what runs in the guest: the firmware program's name
 * @param regions    memory regions of the guest address space
 */
public record VmInfo(String name, String state, int vcpuCount, long memSizeMib, long uptimeMs, String guest,
        int regions) {
}
