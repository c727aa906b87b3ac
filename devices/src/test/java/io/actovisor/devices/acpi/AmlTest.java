package io.actovisor.devices.acpi;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.List;
import org.junit.jupiter.api.Test;

/** AML encodings checked byte by byte against ACPI 6.5 chapter 20 (and what iasl emits for the same source). */
class AmlTest {
    private static byte[] bytes(int... values) {
        byte[] out = new byte[values.length];
        for (int i = 0; i < values.length; i++) {
            out[i] = (byte) values[i];
        }
        return out;
    }

    @Test
    void integersUseTheShortestEncoding() {
        assertArrayEquals(bytes(0x00), Aml.integer(0));
        assertArrayEquals(bytes(0x01), Aml.integer(1));
        assertArrayEquals(bytes(0x0a, 0x05), Aml.integer(5));
        assertArrayEquals(bytes(0x0b, 0x34, 0x12), Aml.integer(0x1234));
        assertArrayEquals(bytes(0x0c, 0x00, 0x10, 0x00, 0xd0), Aml.integer(0xd0001000L));
        assertArrayEquals(bytes(0x0e, 0, 0, 0, 0, 1, 0, 0, 0), Aml.integer(1L << 32));
    }

    @Test
    void namesArePaddedAndRooted() {
        assertArrayEquals(bytes('\\', '_', 'S', 'B', '_'), Aml.nameString("\\_SB"));
        assertArrayEquals(bytes('_', 'H', 'I', 'D'), Aml.nameString("_HID"));
        assertArrayEquals(bytes(0x2e, '_', 'S', 'B', '_', 'V', 'R', '0', '0'), Aml.nameString("_SB.VR00"));
        assertThrows(IllegalArgumentException.class, () -> Aml.nameString("toolong"));
    }

    @Test
    void nameWithAString() {
        // Name (_HID, "LNRO0005")
        assertArrayEquals(bytes(0x08, '_', 'H', 'I', 'D', 0x0d, 'L', 'N', 'R', 'O', '0', '0', '0', '5', 0),
                Aml.name("_HID", Aml.string("LNRO0005")));
    }

    @Test
    void pkgLengthCountsItselfAndSwitchesToTwoBytesAt64() {
        assertEquals(0x3f, Aml.pkg(new byte[62])[0]);
        byte[] two = Aml.pkg(new byte[62 + 1]);
        // 63 body bytes + 2 length bytes = 65 = 0x41: lead 0x40 | 1, then 0x41 >> 4 = 4.
        assertEquals(0x41, two[0] & 0xff);
        assertEquals(0x04, two[1]);
        assertEquals(65, two.length);
        byte[] three = Aml.pkg(new byte[5000]);
        int length = (three[0] & 0x0f) | (three[1] & 0xff) << 4 | (three[2] & 0xff) << 12;
        assertEquals(0x80, three[0] & 0xc0);
        assertEquals(5003, length);
    }

    @Test
    void aResourceTemplateWithMemoryAndAnInterrupt() {
        // ResourceTemplate () { Memory32Fixed (ReadWrite, 0xD0001000, 0x200)
        //                       Interrupt (ResourceConsumer, Level, ActiveHigh, Exclusive) { 5 } }
        byte[] expected = bytes(0x11, 0x1a, 0x0a, 0x17,
                0x86, 0x09, 0x00, 0x01, 0x00, 0x10, 0x00, 0xd0, 0x00, 0x02, 0x00, 0x00,
                0x89, 0x06, 0x00, 0x01, 0x01, 0x05, 0x00, 0x00, 0x00,
                0x79, 0x00);
        assertArrayEquals(expected, Aml.resourceTemplate(List.of(Aml.memory32Fixed(true, 0xd0001000L, 0x200),
                Aml.interrupt(5, false, false, false))));
    }

    @Test
    void aDeviceInAScope() {
        byte[] device = Aml.device("VR00", List.of(Aml.name("_UID", Aml.integer(0))));
        // DeviceOp 5B 82, PkgLength, NameSeg, Name(_UID, Zero)
        assertArrayEquals(bytes(0x5b, 0x82, 0x0b, 'V', 'R', '0', '0', 0x08, '_', 'U', 'I', 'D', 0x00), device);
        byte[] scope = Aml.scope("\\_SB", List.of(device));
        assertEquals(0x10, scope[0]);
        assertEquals(1 + 5 + device.length, scope[1]);
    }

    @Test
    void ioDescribesAFixedSixteenBitPortRange() {
        // IO (Decode16, 0x03F8, 0x03F8, 0x01, 0x08), as iasl compiles it
        assertArrayEquals(new byte[] {0x47, 0x01, (byte) 0xf8, 0x03, (byte) 0xf8, 0x03, 0x01, 0x08},
                Aml.io(0x3f8, 8));
        assertThrows(IllegalArgumentException.class, () -> Aml.io(0xfffc, 8));
        assertThrows(IllegalArgumentException.class, () -> Aml.io(0x3f8, 0));
    }

    @Test
    void anEdgeTriggeredInterruptSetsOnlyTheModeBit() {
        assertEquals(0x03, Aml.interrupt(4, true, false, false)[3], "consumer | edge");
    }
}
