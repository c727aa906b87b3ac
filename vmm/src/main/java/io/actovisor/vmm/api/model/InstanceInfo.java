package io.actovisor.vmm.api.model;

/**
 * {@code GET /}: Firecracker's instance information.
 *
 * @param appName    always {@code actovisor}
 * @param id         the VM's name
 * @param state      {@code Not started}, {@code Running}, {@code Paused} or {@code Stopping}
 * @param vmmVersion this build's version
 */
public record InstanceInfo(String appName, String id, String state, String vmmVersion) {
}
