package io.actovisor.kernel.kvm;

import io.actovisor.memory.AddressRange;
import io.actovisor.memory.HostAddress;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.sys.NativeBuffer;
import io.actovisor.memory.sys.Posix;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentSkipListMap;

/**
 * One KVM virtual machine: owns the VM fd ({@link #close()} is idempotent) and knows its memory slots. vCPUs it
 * creates own their own fds and must be closed by their owner.
 */
public final class KvmVm implements AutoCloseable {
    /** Where the VMX TSS pages go: three pages just below the identity-map page, above any RAM we hand out. */
    public static final long TSS_ADDRESS = 0xfffbd000L;
    /** The one page the VMX real-mode identity page table needs. */
    public static final long IDENTITY_MAP_ADDRESS = 0xfffbc000L;

    private final Posix posix;
    private final int fd;
    private final long vcpuMmapSize;
    private final int maxMemorySlots;
    private final Map<Integer, MemorySlot> slots = new ConcurrentSkipListMap<>();
    private volatile boolean closed;
    private volatile boolean irqchip;

    KvmVm(Posix posix, int fd, long vcpuMmapSize, int maxMemorySlots) {
        this.posix = posix;
        this.fd = fd;
        this.vcpuMmapSize = vcpuMmapSize;
        this.maxMemorySlots = maxMemorySlots;
        // KVM_SET_IDENTITY_MAP_ADDR reads a u64 from user memory, so the address travels in a buffer.
        try (NativeBuffer address = NativeBuffer.allocate(8)) {
            address.putLong(0, IDENTITY_MAP_ADDRESS);
            posix.ioctl(fd, KvmAbi.KVM_SET_IDENTITY_MAP_ADDR, address.address());
            posix.ioctl(fd, KvmAbi.KVM_SET_TSS_ADDR, TSS_ADDRESS);
        } catch (RuntimeException e) {
            posix.close(fd);
            throw e;
        }
    }

    private int fd() {
        if (closed) {
            throw new IllegalStateException("KVM VM (fd " + fd + ") is closed");
        }
        return fd;
    }

    /** The number of memory slots this VM may use (KVM_CAP_NR_MEMSLOTS). */
    public int maxMemorySlots() {
        return maxMemorySlots;
    }

    /** A snapshot of the slots in use, by slot number. */
    public Map<Integer, MemorySlot> memorySlots() {
        return new TreeMap<>(slots);
    }

    /** The lowest slot number not in use, or -1 when every slot is taken. */
    public int freeSlot() {
        for (int i = 0; i < maxMemorySlots; i++) {
            if (!slots.containsKey(i)) {
                return i;
            }
        }
        return -1;
    }

    /**
     * KVM_SET_USER_MEMORY_REGION: map {@code guest} to host memory at {@code host}. Guest range and host address
     * must be page-aligned; the slot must be free. On failure no slot changes.
     */
    public MemorySlot setMemorySlot(int slot, AddressRange guest, HostAddress host, boolean readOnly) {
        if (slot < 0 || slot >= maxMemorySlots) {
            throw new IllegalArgumentException("memory slot " + slot + " is outside 0.." + (maxMemorySlots - 1));
        }
        if (slots.containsKey(slot)) {
            throw new IllegalArgumentException("memory slot " + slot + " is in use: " + slots.get(slot));
        }
        if (!guest.isAligned(HostMemory.PAGE_SIZE) || host.value() % HostMemory.PAGE_SIZE != 0) {
            throw new IllegalArgumentException("memory slot " + slot + ": guest range " + guest + " and host address "
                    + host + " must be page-aligned");
        }
        write(slot, readOnly ? KvmAbi.KVM_MEM_READONLY : 0, guest.base(), guest.size(), host.value());
        MemorySlot added = new MemorySlot(slot, guest, host, readOnly);
        slots.put(slot, added);
        return added;
    }

    /** Delete a slot (KVM_SET_USER_MEMORY_REGION with size 0). Removing a slot not in use is an error. */
    public MemorySlot removeMemorySlot(int slot) {
        MemorySlot existing = slots.get(slot);
        if (existing == null) {
            throw new IllegalArgumentException("memory slot " + slot + " is not in use");
        }
        write(slot, 0, existing.guest().base(), 0, existing.host().value());
        slots.remove(slot);
        return existing;
    }

    private void write(int slot, int flags, long gpa, long size, long hva) {
        try (NativeBuffer region = NativeBuffer.allocate(KvmAbi.KVM_USERSPACE_MEMORY_REGION_SIZE)) {
            region.putInt(KvmAbi.MEMREG_SLOT, slot)
                    .putInt(KvmAbi.MEMREG_FLAGS, flags)
                    .putLong(KvmAbi.MEMREG_GUEST_PHYS_ADDR, gpa)
                    .putLong(KvmAbi.MEMREG_MEMORY_SIZE, size)
                    .putLong(KvmAbi.MEMREG_USERSPACE_ADDR, hva);
            posix.ioctl(fd(), KvmAbi.KVM_SET_USER_MEMORY_REGION, region.address());
        }
    }

    /**
     * KVM_CREATE_IRQCHIP then KVM_CREATE_PIT2: the in-kernel PIC pair, I/O APIC (24 pins, GSI n = pin n) and local
     * APICs, and the in-kernel PIT (IRQ 0). Call before creating vCPUs, at most once.
     */
    public void createInterruptControllers() {
        posix.ioctl(fd(), KvmAbi.KVM_CREATE_IRQCHIP, 0);
        try (NativeBuffer config = NativeBuffer.allocate(KvmAbi.KVM_PIT_CONFIG_SIZE)) {
            config.putInt(KvmAbi.PIT_CONFIG_FLAGS, KvmAbi.KVM_PIT_SPEAKER_DUMMY);
            posix.ioctl(fd(), KvmAbi.KVM_CREATE_PIT2, config.address());
        }
        irqchip = true;
    }

    /** Whether {@link #createInterruptControllers()} ran. */
    public boolean hasIrqchip() {
        return irqchip;
    }

    /**
     * KVM_IRQ_LINE: drive interrupt line {@code gsi} high or low. Edge-triggered inputs fire on the rising edge;
     * level-triggered ones stay asserted while high. Callable from any thread.
     */
    public void setIrqLine(int gsi, boolean high) {
        if (!irqchip) {
            throw new IllegalStateException("KVM VM (fd " + fd + ") has no in-kernel interrupt controller");
        }
        try (NativeBuffer level = NativeBuffer.allocate(KvmAbi.KVM_IRQ_LEVEL_SIZE)) {
            level.putInt(KvmAbi.IRQ_LEVEL_IRQ, gsi).putInt(KvmAbi.IRQ_LEVEL_LEVEL, high ? 1 : 0);
            posix.ioctl(fd(), KvmAbi.KVM_IRQ_LINE, level.address());
        }
    }

    /** KVM_CREATE_VCPU with its kvm_run mapping; the caller owns the returned vCPU. */
    public KvmVcpu createVcpu(int id) {
        int vcpuFd = (int) posix.ioctl(fd(), KvmAbi.KVM_CREATE_VCPU, id);
        return KvmVcpu.map(posix, id, vcpuFd, vcpuMmapSize);
    }

    /** Close the VM fd. Idempotent. Slots vanish with the VM. */
    @Override
    public void close() {
        if (!closed) {
            closed = true;
            slots.clear();
            posix.close(fd);
        }
    }
}
