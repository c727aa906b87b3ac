package io.actovisor.cluster;

import java.util.List;

/**
 * What one node reports about itself, read from its VMs' own actors by its {@link NodeAgent} and published in
 * Distributed Data (key {@link ClusterData#NODES}, local writes spread by gossip).
 *
 * @param node                         the node's address
 * @param capacityBytes                host memory the node offers to guests
 * @param thresholdBytes               committed memory above which the memory controller inflates balloons
 * @param committedBytes               the sum of its VMs' RAM
 * @param pinnedBytes                  RAM of VMs whose discards are disabled by an attached group (discard = inhibit,
 *                                     or a coordinated group fallen back to uncoordinated)
 * @param coordinatedReclaimableBytes  RAM of VMs with a balloon whose discard holders are all coordinated (none
 *                                     fallen back): reclaimable in blocks their containers unmap first
 * @param balloonableBytes             RAM of VMs with a balloon that are not pinned
 * @param actualBytes                  the balloons' actual sizes: memory the guests have given back
 * @param residentBytes                the VMs' RAM resident in host memory (each VM's own mincore reading)
 * @param vms                          one line per VM running here
 */
public record NodeReport(String node, long capacityBytes, long thresholdBytes, long committedBytes,
        long pinnedBytes, long coordinatedReclaimableBytes, long balloonableBytes, long actualBytes,
        long residentBytes, long reportedAtMillis, List<VmReport> vms) implements ClusterSerializable {

    public NodeReport {
        vms = List.copyOf(vms);
    }

    /**
     * One VM as its node sees it.
     *
     * @param targetSource  who set the balloon target: {@code none}, {@code controller} or {@code api}
     * @param residentBytes bytes of the VM's RAM resident in host memory, read by the VM's own actor (mincore)
     */
    public record VmReport(String id, String state, long ramBytes, long pinnedBytes,
            long coordinatedReclaimableBytes, long balloonableBytes,
            long actualBytes, long targetBytes, String targetSource, long residentBytes)
            implements ClusterSerializable {
    }
}
