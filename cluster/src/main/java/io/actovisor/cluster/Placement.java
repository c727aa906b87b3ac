package io.actovisor.cluster;

import java.util.Collection;
import java.util.Comparator;
import java.util.Optional;

/**
 * Where a new VM goes, decided at admission. A VM that cannot give memory back (pinned: an attached VFIO group
 * disables discards; or without a balloon) needs its whole RAM free on the node: committed + RAM <= capacity. A
 * balloonable VM may overcommit the node up to {@code overcommitRatio} x capacity. Among the nodes where it fits,
 * the one with the most room of that kind wins (ties: the lower address), which spreads VMs across nodes.
 */
public final class Placement {
    private Placement() {
    }

    /** A node as placement sees it: its capacity and the RAM of the VMs placed on it. */
    public record Node(String address, long capacityBytes, long committedBytes) {
        /** Room for a VM that cannot be overcommitted. */
        long fixedRoom() {
            return capacityBytes - committedBytes;
        }

        /** Room for a balloonable VM. */
        long balloonableRoom(double ratio) {
            return (long) (capacityBytes * ratio) - committedBytes;
        }
    }

    /** A VM to place. */
    public record Candidate(String id, long ramBytes, boolean pinned, boolean balloonable) {
        boolean overcommittable() {
            return balloonable && !pinned;
        }
    }

    /** The outcome: a node, or a refusal that says why. */
    public sealed interface Decision permits Placed, Refused {
    }

    public record Placed(String node, String reason) implements Decision {
    }

    public record Refused(String reason) implements Decision {
    }

    /** Place {@code vm} on one of {@code nodes}. */
    public static Decision place(Candidate vm, Collection<Node> nodes, double overcommitRatio) {
        Comparator<Node> byRoom = Comparator.comparingLong((Node n) -> room(vm, n, overcommitRatio))
                .thenComparing(Node::address, Comparator.reverseOrder());
        Optional<Node> best = nodes.stream().max(byRoom);
        if (best.isEmpty()) {
            return new Refused("VM " + vm.id() + " cannot be placed: no node has reported its capacity yet");
        }
        Node n = best.get();
        long room = room(vm, n, overcommitRatio);
        if (room >= vm.ramBytes()) {
            return new Placed(n.address(), "VM " + vm.id() + " (" + mib(vm.ramBytes()) + ", " + kind(vm)
                    + ") placed on " + n.address() + ": the most room, " + mib(room) + " of " + limit(vm, n,
                    overcommitRatio) + " free");
        }
        return new Refused("VM " + vm.id() + " needs " + mib(vm.ramBytes()) + " (" + vm.ramBytes() + " bytes) on one "
                + "node but fits nowhere: " + why(vm, overcommitRatio) + "; the largest free amount is "
                + mib(Math.max(0, room)) + " (" + Math.max(0, room) + " bytes) on " + n.address() + " (capacity "
                + mib(n.capacityBytes()) + ", committed " + mib(n.committedBytes()) + ")");
    }

    private static long room(Candidate vm, Node n, double ratio) {
        return vm.overcommittable() ? n.balloonableRoom(ratio) : n.fixedRoom();
    }

    private static String kind(Candidate vm) {
        return vm.pinned() ? "pinned" : vm.balloonable() ? "balloonable" : "not balloonable";
    }

    private static String limit(Candidate vm, Node n, double ratio) {
        return vm.overcommittable() ? mib((long) (n.capacityBytes() * ratio)) + " (" + ratio + " x capacity)"
                : mib(n.capacityBytes()) + " (capacity)";
    }

    private static String why(Candidate vm, double ratio) {
        if (vm.pinned()) {
            return "it is pinned (a VFIO group that disables discards attaches at start), so its RAM cannot be "
                    + "reclaimed and it needs its whole RAM free without overcommit";
        }
        if (!vm.balloonable()) {
            return "it has no balloon, so its RAM cannot be reclaimed and it needs its whole RAM free without "
                    + "overcommit";
        }
        return "it is balloonable, so a node may be overcommitted up to " + ratio + " x its capacity, and no node "
                + "has that much room left";
    }

    static String mib(long bytes) {
        return bytes % (1 << 20) == 0 ? (bytes >> 20) + " MiB" : String.format("%.1f MiB", bytes / 1048576.0);
    }
}
