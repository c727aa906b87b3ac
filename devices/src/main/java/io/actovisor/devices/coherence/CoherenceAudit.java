package io.actovisor.devices.coherence;

import io.actovisor.devices.iommu.DmaMapping;
import io.actovisor.devices.iommu.DmaPort;
import io.actovisor.memory.HostAddress;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.OptionalLong;

/**
 * Invariant 4, checked: for every mapped IOVA page, what the device reads through the IOMMU equals what the CPU
 * reads at that guest address. Where {@code /proc/self/pagemap} shows frames, a {@link PfnLedger} taken at map time
 * also catches pages whose frame changed even if their bytes still agree (a discarded page the guest has not yet
 * rewritten reads zero on both sides only by luck).
 */
public final class CoherenceAudit {
    private static final int PAGE = 4096;
    private static final int CHUNK = 64 * PAGE;

    private CoherenceAudit() {
    }

    /** The frames behind each mapped page now: take one right after mapping to compare later. */
    public record PfnLedger(Map<Long, Long> pfnByHostPage) {
        public PfnLedger {
            pfnByHostPage = Map.copyOf(pfnByHostPage);
        }

        public static PfnLedger take(List<DmaMapping> mappings, CpuView cpu) {
            Map<Long, Long> pfns = new HashMap<>();
            for (DmaMapping m : mappings) {
                for (long off = 0; off < m.iova().size(); off += PAGE) {
                    long host = m.host().value() + off;
                    cpu.pfn(new HostAddress(host)).ifPresent(pfn -> pfns.put(host, pfn));
                }
            }
            return new PfnLedger(pfns);
        }

        OptionalLong at(long hostPage) {
            Long pfn = pfnByHostPage.get(hostPage);
            return pfn == null ? OptionalLong.empty() : OptionalLong.of(pfn);
        }
    }

    /** Compare every page of {@code mappings} as {@code device} and {@code cpu} read it. */
    public static CoherenceReport audit(List<DmaMapping> mappings, DmaPort device, CpuView cpu, PfnLedger atMap) {
        long pages = 0;
        List<CoherenceReport.IncoherentPage> incoherent = new ArrayList<>();
        List<Long> pfnMismatches = new ArrayList<>();
        for (DmaMapping m : mappings) {
            if (!m.permissions().canRead()) {
                continue;
            }
            for (long chunk = 0; chunk < m.iova().size(); chunk += CHUNK) {
                int length = (int) Math.min(CHUNK, m.iova().size() - chunk);
                byte[] seenByDevice = device.read(m.iova().base() + chunk, length);
                byte[] seenByCpu = cpu.read(m.host().checkedAdd(chunk), length);
                for (int page = 0; page < length; page += PAGE) {
                    pages++;
                    long gpa = m.iova().base() + chunk + page;
                    long hostPage = m.host().value() + chunk + page;
                    OptionalLong pinned = atMap.at(hostPage);
                    OptionalLong now = pinned.isPresent() ? cpu.pfn(new HostAddress(hostPage)) : OptionalLong.empty();
                    boolean moved = pinned.isPresent() && now.isPresent() && pinned.getAsLong() != now.getAsLong();
                    if (moved) {
                        pfnMismatches.add(gpa);
                    }
                    int differs = firstDifference(seenByDevice, seenByCpu, page, Math.min(PAGE, length - page));
                    if (differs >= 0) {
                        incoherent.add(new CoherenceReport.IncoherentPage(gpa, differs, seenByDevice[page + differs],
                                seenByCpu[page + differs], pinned, now.isPresent() ? now
                                        : cpu.pfn(new HostAddress(hostPage))));
                    }
                }
            }
        }
        return new CoherenceReport(pages, incoherent, pfnMismatches);
    }

    /** Compare without a ledger: bytes only. */
    public static CoherenceReport audit(List<DmaMapping> mappings, DmaPort device, CpuView cpu) {
        return audit(mappings, device, cpu, new PfnLedger(Map.of()));
    }

    private static int firstDifference(byte[] a, byte[] b, int from, int length) {
        for (int i = 0; i < length; i++) {
            if (a[from + i] != b[from + i]) {
                return i;
            }
        }
        return -1;
    }
}
