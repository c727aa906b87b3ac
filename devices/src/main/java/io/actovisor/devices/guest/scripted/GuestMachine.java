package io.actovisor.devices.guest.scripted;

import io.actovisor.memory.GuestMemory;
import io.actovisor.memory.GuestMemoryView;
import java.util.Optional;
import java.util.Set;

/**
 * What a {@link GuestProgram} sees of its VM: guest RAM, the register windows of the VM's MMIO devices (by the
 * device names of the memory map), a console, and the guest's work area. The program's code runs on the guest's
 * actor, one step at a time: every stage a {@link RegisterBus} returns completes on that actor, so a program that
 * only chains non-async stages never runs concurrently with itself and never touches RAM after its VM stopped.
 */
public interface GuestMachine {
    /** Guest RAM as the VM's address space publishes it: keep this, not a snapshot, to see RAM added later. */
    GuestMemoryView memoryView();

    /** Guest RAM as of now, through the VM's flat view (one snapshot: take it per step). */
    default GuestMemory memory() {
        return memoryView().current();
    }

    /** The register window of device {@code name}, if the VM maps one. */
    Optional<RegisterBus> device(String name);

    /** The names of the devices the VM maps. */
    Set<String> devices();

    /** Print one line on the VM's console. */
    void console(String line);

    /** Where the guest's driver structures (virtqueues, buffers) and its work area lie in guest RAM. */
    GuestLayout layout();
}
