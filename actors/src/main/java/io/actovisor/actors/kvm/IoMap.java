package io.actovisor.actors.kvm;

import io.actovisor.actors.device.DeviceIo;
import io.actovisor.memory.AddressRange;
import java.util.List;
import java.util.Optional;
import org.apache.pekko.actor.typed.ActorRef;

/**
 * Which device answers which MMIO and port I/O addresses, as a vCPU resolves its exits. Immutable; the VM builds it
 * from its MMIO regions (each names its device) and its port devices.
 */
public record IoMap(List<Entry> entries) {
    public IoMap {
        entries = List.copyOf(entries);
    }

    /** Addresses {@code range} of {@code space} belong to the device {@code name}. */
    public record Entry(DeviceIo.Space space, AddressRange range, String name, ActorRef<DeviceIo.Command> device) {
    }

    /** The entry that claims {@code address} in {@code space}. */
    public Optional<Entry> find(DeviceIo.Space space, long address) {
        for (Entry e : entries) {
            if (e.space() == space && e.range().contains(address)) {
                return Optional.of(e);
            }
        }
        return Optional.empty();
    }
}
