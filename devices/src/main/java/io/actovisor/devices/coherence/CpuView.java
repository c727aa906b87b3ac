package io.actovisor.devices.coherence;

import io.actovisor.memory.HostAddress;
import io.actovisor.memory.HostMemory;
import java.util.List;
import java.util.OptionalLong;

/** What the CPU sees at a host address: the bytes its page tables map there now, and the page frame behind them. */
public interface CpuView {
    /** Read {@code length} bytes at {@code host} through the process's page tables. */
    byte[] read(HostAddress host, int length);

    /** The physical frame behind {@code host} now, where pagemap shows it. */
    OptionalLong pfn(HostAddress host);

    /** The CPU view of guest RAM held in {@code memory}. */
    static CpuView of(List<HostMemory> memory) {
        return new CpuView() {
            private HostMemory owner(HostAddress host) {
                return memory.stream().filter(m -> m.hostRange().contains(host.value())).findFirst()
                        .orElseThrow(() -> new IllegalArgumentException("host address " + host
                                + " is in none of the VM's memory blocks"));
            }

            @Override
            public byte[] read(HostAddress host, int length) {
                return owner(host).read(host, length);
            }

            @Override
            public OptionalLong pfn(HostAddress host) {
                try {
                    return owner(host).pfn(host);
                } catch (RuntimeException hidden) {
                    return OptionalLong.empty();
                }
            }
        };
    }
}
