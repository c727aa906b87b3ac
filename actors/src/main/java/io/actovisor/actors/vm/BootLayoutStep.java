package io.actovisor.actors.vm;

import io.actovisor.devices.boot.linux.LinuxBoot;
import io.actovisor.devices.boot.BootLayout;
import io.actovisor.memory.GuestMemory;
import io.actovisor.memory.RegionKind;
import java.util.Optional;

/**
 * The VM's boot step, once its memory map is committed: lay the guest into RAM as the address space published it.
 * A Linux guest is loaded by the 64-bit boot protocol ({@link LinuxGuestStart}); a firmware guest gets the bundled
 * or configured firmware and its {@link BootLayout.BootInfo} (program, contiguous RAM from 0, work area, arguments).
 */
final class BootLayoutStep {
    private BootLayoutStep() {
    }

    /** Write {@code guest} into {@code memory}; returns what the Linux loader placed, empty for firmware. */
    static Optional<LinuxBoot.Loaded> write(VmTopology.Guest guest, GuestMemory memory) {
        if (guest.linux().isPresent()) {
            return Optional.of(LinuxGuestStart.load(guest, memory));
        }
        BootLayout.write(memory, guest.firmware(), new BootLayout.BootInfo(guest.program(), ramBelow4g(memory),
                guest.workBytes(), guest.args()));
        return Optional.empty();
    }

    /** Bytes of RAM contiguous from guest-physical 0: what the firmware may assume. */
    static long ramBelow4g(GuestMemory memory) {
        long end = 0;
        for (var r : memory.view().sections()) {
            if (r.kind() == RegionKind.RAM && r.range().base() == end) {
                end += r.range().size();
            }
        }
        return end;
    }
}
