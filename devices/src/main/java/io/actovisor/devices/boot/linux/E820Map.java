package io.actovisor.devices.boot.linux;

import io.actovisor.memory.AddressRange;
import java.util.ArrayList;
import java.util.List;

/**
 * The e820 memory map a Linux guest is given: each RAM range of the VM, except the legacy hole from the EBDA
 * ({@value #EBDA_START}) to 1 MiB, which is reserved (the ACPI tables live there, and Linux expects no RAM in the
 * VGA and BIOS areas). Ranges that are not RAM (MMIO, the I/O APIC, the local APICs) are simply absent.
 */
public final class E820Map {
    /** Where the legacy reserved area below 1 MiB starts (the traditional EBDA address). */
    public static final long EBDA_START = 0x9fc00;
    /** The first byte above the legacy area. */
    public static final long HIGH_MEMORY = 0x100000;

    /** One entry: {@code type} is {@link BootParamsAbi#E820_RAM}, {@code E820_RESERVED} or {@code E820_ACPI}. */
    public record Entry(long address, long size, int type) {
    }

    private E820Map() {
    }

    /** The map for {@code ram} (sorted, non-overlapping guest-physical RAM ranges). */
    public static List<Entry> of(List<AddressRange> ram) {
        List<Entry> out = new ArrayList<>();
        for (AddressRange r : ram) {
            long start = r.base();
            long end = r.end();
            if (start < EBDA_START) {
                out.add(new Entry(start, Math.min(end, EBDA_START) - start, BootParamsAbi.E820_RAM));
            }
            if (end > HIGH_MEMORY) {
                long from = Math.max(start, HIGH_MEMORY);
                out.add(new Entry(from, end - from, BootParamsAbi.E820_RAM));
            }
        }
        out.add(new Entry(EBDA_START, HIGH_MEMORY - EBDA_START, BootParamsAbi.E820_RESERVED));
        out.sort((a, b) -> Long.compareUnsigned(a.address(), b.address()));
        if (out.size() > BootParamsAbi.E820_MAX_ENTRIES) {
            throw new LinuxBootException("the VM's RAM needs " + out.size() + " e820 entries; the zero page holds "
                    + BootParamsAbi.E820_MAX_ENTRIES);
        }
        return List.copyOf(out);
    }
}
