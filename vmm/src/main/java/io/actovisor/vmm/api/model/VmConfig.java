package io.actovisor.vmm.api.model;

import com.fasterxml.jackson.annotation.JsonProperty;
import java.util.List;

/**
 * {@code GET /vm/config}: the configuration the VM runs with (Firecracker's key names where they exist); secrets
 * such as the API token are not part of it.
 *
 * @param name          the VM's name
 * @param machineConfig vCPUs and memory
 * @param balloon       the balloon device, null when the VM has none
 * @param guest         the guest program
 * @param vfio          the VFIO containers and their groups
 */
public record VmConfig(String name, @JsonProperty("machine-config") MachineConfig machineConfig,
        BalloonConfig balloon, String guest, List<Container> vfio) {
    public VmConfig {
        vfio = List.copyOf(vfio);
    }

    /** A configured container, its discard mode ({@code inhibit}, {@code coordinated}, {@code on-demand}) and the ids of its groups. */
    public record Container(String name, String backend, String discard, List<String> groups) {
        public Container {
            groups = List.copyOf(groups);
        }
    }
}
