package io.actovisor.memory;

/** What a guest-physical region is, which decides who sees it: IOMMUs and KVM map RAM and ROM, never MMIO. */
public enum RegionKind {
    /** Guest RAM backed by host memory; mapped for the CPU and for device DMA. */
    RAM,
    /** Read-only memory backed by host memory; the CPU and devices may read it, nobody writes it. */
    ROM,
    /** Registers of an emulated device: accesses trap to the device that owns the region. */
    MMIO,
    /** A hole: nothing answers there, and nothing may be mapped there. */
    RESERVED;

    /** Whether the region is backed by host memory. */
    public boolean isMemory() {
        return this == RAM || this == ROM;
    }
}
