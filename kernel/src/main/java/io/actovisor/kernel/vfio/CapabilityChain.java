package io.actovisor.kernel.vfio;

import io.actovisor.memory.sys.NativeBuffer;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Optional;
import java.util.Set;

/**
 * The capability chain of a VFIO INFO reply: headers linked by offsets from the start of the INFO buffer. The walk
 * is bounds-checked and refuses loops, so a malformed reply is an error, never a hang or a wild read.
 *
 * @param capabilities the headers in chain order
 */
public record CapabilityChain(List<Capability> capabilities) {
    /**
     * One capability header.
     *
     * @param id      the capability id, unique per INFO ioctl
     * @param version the capability's layout version
     * @param offset  where the header starts in the INFO buffer
     */
    public record Capability(int id, int version, int offset) {
    }

    public CapabilityChain {
        capabilities = List.copyOf(capabilities);
    }

    /** An empty chain: the kernel reported none, or no CAPS flag. */
    public static CapabilityChain empty() {
        return new CapabilityChain(List.of());
    }

    /** Walk the chain of {@code info} from {@code firstOffset} (0: no chain); {@code what} names the ioctl. */
    public static CapabilityChain walk(NativeBuffer info, int firstOffset, int minimumOffset, String what) {
        List<Capability> out = new ArrayList<>();
        Set<Integer> seen = new HashSet<>();
        int offset = firstOffset;
        while (offset != 0) {
            if (offset < minimumOffset || (long) offset + VfioAbi.CapHeader.SIZE > info.size() || !seen.add(offset)) {
                throw new VfioException(VfioException.Reason.NATIVE, what + " returned a malformed capability chain:"
                        + " a header at offset " + Integer.toUnsignedString(offset) + " in a " + info.size()
                        + "-byte reply" + (seen.contains(offset) ? " (loop or overlap)" : ""));
            }
            int id = Short.toUnsignedInt(info.getShort(offset + VfioAbi.CapHeader.ID));
            int version = Short.toUnsignedInt(info.getShort(offset + VfioAbi.CapHeader.VERSION));
            out.add(new Capability(id, version, offset));
            offset = info.getInt(offset + VfioAbi.CapHeader.NEXT);
        }
        return new CapabilityChain(out);
    }

    /** The first capability with {@code id}, if present. */
    public Optional<Capability> find(int id) {
        return capabilities.stream().filter(c -> c.id() == id).findFirst();
    }
}
