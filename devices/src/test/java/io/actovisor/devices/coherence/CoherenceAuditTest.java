package io.actovisor.devices.coherence;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.devices.iommu.DmaPermissions;
import io.actovisor.devices.iommu.pinned.PinnedIommu;
import io.actovisor.kernel.uring.IoUring;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.HostAddress;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.testing.NativeRequirement;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** The audit on real pins: silent while coherent, and naming exactly the pages a discard under pin broke. */
class CoherenceAuditTest {
    private static final long PAGE = 4096;
    private static final long GPA = 0x200000;

    @BeforeAll
    static void requireIoUring() {
        NativeRequirement.require("io_uring", IoUring.unavailabilityCause());
    }

    @Test
    void findsExactlyThePagesDiscardedUnderPin() {
        try (HostMemory ram = HostMemory.anonymous("audit", 16 * PAGE); PinnedIommu iommu = PinnedIommu.open()) {
            for (int p = 0; p < 16; p++) {
                ram.writeLong(ram.base().checkedAdd(p * PAGE), 0x4141_4141L + p);
            }
            iommu.map(AddressRange.of(GPA, 16 * PAGE), ram.base(), DmaPermissions.READ_WRITE);
            CpuView cpu = CpuView.of(List.of(ram));
            CoherenceAudit.PfnLedger ledger = CoherenceAudit.PfnLedger.take(iommu.mappings(), cpu);
            CoherenceReport clean = CoherenceAudit.audit(iommu.mappings(), iommu.dmaPort().orElseThrow(), cpu, ledger);
            assertEquals(16, clean.pagesChecked());
            assertTrue(clean.coherent(), clean.toString());

            // The seed's failure on pages 3 and 4: discard under pin, then the CPU writes new data.
            ram.discard(3 * PAGE, 2 * PAGE);
            ram.writeLong(ram.base().checkedAdd(3 * PAGE), 0x4242_4242L);
            ram.writeLong(ram.base().checkedAdd(4 * PAGE), 0x4343_4343L);
            CoherenceReport broken = CoherenceAudit.audit(iommu.mappings(), iommu.dmaPort().orElseThrow(), cpu,
                    ledger);
            assertEquals(List.of(GPA + 3 * PAGE, GPA + 4 * PAGE),
                    broken.incoherent().stream().map(CoherenceReport.IncoherentPage::guestAddress).toList());
            CoherenceReport.IncoherentPage first = broken.incoherent().get(0);
            assertEquals(0, first.offset());
            assertEquals((byte) 0x44, first.deviceByte(), "the device reads the old page (0x41414144)");
            assertEquals((byte) 0x42, first.cpuByte());
            if (!ledger.pfnByHostPage().isEmpty()) {
                assertEquals(List.of(GPA + 3 * PAGE, GPA + 4 * PAGE), broken.pfnMismatches());
            }
            HostAddress untouched = ram.base().checkedAdd(5 * PAGE);
            assertEquals(0x4141_4146L, ram.readLong(untouched));
        }
    }
}
