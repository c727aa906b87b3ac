package io.actovisor.devices.acpi;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.List;
import org.junit.jupiter.api.Test;

/** Checksums, lengths and the fields a Linux guest reads in each table. */
class AcpiTablesTest {
    private static int sum(byte[] bytes, int length) {
        int s = 0;
        for (int i = 0; i < length; i++) {
            s += bytes[i];
        }
        return s & 0xff;
    }

    private static ByteBuffer le(byte[] bytes) {
        return ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
    }

    @Test
    void rsdpChecksumsAndPointer() {
        byte[] rsdp = AcpiTables.rsdp(0xe0040);
        assertEquals("RSD PTR ", new String(rsdp, 0, 8, StandardCharsets.US_ASCII));
        assertEquals(0, sum(rsdp, 20));
        assertEquals(0, sum(rsdp, 36));
        assertEquals(2, rsdp[15]);
        assertEquals(36, le(rsdp).getInt(20));
        assertEquals(0xe0040, le(rsdp).getLong(24));
    }

    @Test
    void fadtIsHardwareReducedRevision6AndPointsToTheDsdt() {
        byte[] fadt = AcpiTables.fadt(0xe0200);
        assertEquals("FACP", new String(fadt, 0, 4, StandardCharsets.US_ASCII));
        assertEquals(276, le(fadt).getInt(4));
        assertEquals(6, fadt[8]);
        assertEquals(0, sum(fadt, fadt.length));
        assertEquals(1 << 20, le(fadt).getInt(112) & (1 << 20));
        assertEquals(0xe0200, le(fadt).getInt(40));
        assertEquals(0xe0200, le(fadt).getLong(140));
    }

    @Test
    void madtListsEachVcpuAndTheIoApic() {
        byte[] madt = AcpiTables.madt(2);
        ByteBuffer b = le(madt);
        assertEquals("APIC", new String(madt, 0, 4, StandardCharsets.US_ASCII));
        assertEquals(madt.length, b.getInt(4));
        assertEquals(0, sum(madt, madt.length));
        assertEquals((int) AcpiTables.LOCAL_APIC_ADDRESS, b.getInt(36));
        assertEquals(0, madt[44]);
        assertEquals(8, madt[45]);
        assertEquals(1, madt[52 + 3], "the second local APIC has APIC id 1");
        assertEquals(1, madt[60], "then the I/O APIC entry");
        assertEquals(12, madt[61]);
        assertEquals((int) AcpiTables.IO_APIC_ADDRESS, b.getInt(64));
    }

    @Test
    void dsdtHasOneLnro0005DevicePerVirtioWindow() {
        byte[] dsdt = AcpiTables.dsdt(List.of(new AcpiTables.VirtioMmioDevice(0xd0001000L, 0x200, 5),
                new AcpiTables.VirtioMmioDevice(0xd0002000L, 0x200, 6)));
        assertEquals(0, sum(dsdt, dsdt.length));
        assertEquals(dsdt.length, le(dsdt).getInt(4));
        String text = new String(dsdt, StandardCharsets.ISO_8859_1);
        assertEquals(2, text.split("LNRO0005", -1).length - 1);
        assertTrue(text.contains("VR00") && text.contains("VR01"));
    }

    @Test
    void dsdtDescribesCom1WithItsPortsAndAnEdgeTriggeredGsi4() {
        byte[] dsdt = AcpiTables.dsdt(List.of());
        String text = new String(dsdt, StandardCharsets.ISO_8859_1);
        assertTrue(text.contains("COM1") && text.contains("PNP0501"), text);
        byte[] resources = concat(Aml.io(0x3f8, 8), Aml.interrupt(4, true, false, false));
        assertTrue(text.contains(new String(resources, StandardCharsets.ISO_8859_1)), "IO(0x3f8, 8), Interrupt {4}");
        assertEquals(0, sum(dsdt, dsdt.length));
    }

    private static byte[] concat(byte[] a, byte[] b) {
        byte[] out = java.util.Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }
}
