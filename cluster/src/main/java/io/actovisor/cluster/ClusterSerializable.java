package io.actovisor.cluster;

/**
 * Marker for every message and replicated value that crosses the network between cluster nodes: the node
 * configuration binds it to Jackson ({@code pekko-serialization-jackson}, {@code jackson-json}). Java serialization
 * stays off.
 */
public interface ClusterSerializable {
}
