package io.actovisor.kernel.kvm;

import io.actovisor.memory.AddressRange;
import io.actovisor.memory.HostAddress;

/**
 * One KVM memory slot: guest-physical {@code guest} backed by host memory at {@code host}.
 *
 * @param slot     the slot number, below the VM's {@link KvmVm#maxMemorySlots()}
 * @param guest    the guest-physical range
 * @param host     the host virtual address of the range's first byte
 * @param readOnly whether the guest's writes exit as MMIO instead (KVM_MEM_READONLY)
 */
public record MemorySlot(int slot, AddressRange guest, HostAddress host, boolean readOnly) {
    @Override
    public String toString() {
        return "slot " + slot + " " + guest + " -> " + host + (readOnly ? " ro" : "");
    }
}
