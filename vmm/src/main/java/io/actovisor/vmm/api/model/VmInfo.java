package io.actovisor.vmm.api.model;

/**
 * {@code GET /vm}: the running VM.
 *
 * @param name       the VM's name
 * @param state      as in {@link InstanceInfo#state()}
 * @param vcpuCount  vCPUs
 * @param memSizeMib guest RAM in MiB
 * @param uptimeMs   milliseconds since the VM started
 * @param guest      which guest runs, its program and how it is doing
 * @param regions    memory regions of the guest address space
 */
public record VmInfo(String name, String state, int vcpuCount, long memSizeMib, long uptimeMs, Guest guest,
        int regions) {

    /**
     * The VM's guest.
     *
     * @param kind    {@code firmware}, {@code scripted} or {@code none} (not started)
     * @param program the firmware or scripted program it runs
     * @param state   {@code none}, {@code running}, {@code halted} or {@code failed}
     * @param failure why the guest stopped, when it failed (the VM keeps running); else null
     */
    public record Guest(String kind, String program, String state, String failure) {
    }
}
