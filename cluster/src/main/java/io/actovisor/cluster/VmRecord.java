package io.actovisor.cluster;

/**
 * A VM's definition as the cluster keeps it in Distributed Data (key {@link ClusterData#VMS}, majority writes): the
 * validated definition rendered back to HOCON, what placement needs to know of it, and the node it was placed on
 * (updated when the VM starts again elsewhere after its node failed).
 *
 * @param id           the VM's name, also its entity id
 * @param definition   HOCON holding {@code actovisor.vm}, as {@code VmSpecRenderer} renders it
 * @param ramBytes     guest RAM
 * @param pinned       a VFIO group that disables discards attaches at start: its RAM is not reclaimable
 * @param balloonable  it has a balloon and is not pinned: the memory controller may set its target
 * @param node         the address of the node it was placed on (or runs on)
 */
public record VmRecord(String id, String definition, long ramBytes, boolean pinned, boolean balloonable,
        String node) implements ClusterSerializable {

    /** The same VM, placed on {@code address}. */
    public VmRecord on(String address) {
        return new VmRecord(id, definition, ramBytes, pinned, balloonable, address);
    }
}
