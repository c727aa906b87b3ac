package io.actovisor.devices.serial;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

class Uart16550Test {
    @Test
    void linesAreDeliveredWithoutCarriageReturns() {
        List<String> lines = new ArrayList<>();
        Uart16550 uart = new Uart16550(lines::add);
        for (char c : "hello\r\nfrom guest\r\npartial".toCharArray()) {
            assertEquals(0x60, uart.read(5) & 0x60, "transmitter always ready");
            uart.write(0, c);
        }
        assertEquals(List.of("hello", "from guest"), lines);
        uart.flush();
        assertEquals("partial", lines.get(2));
        assertEquals(26, uart.bytesWritten());
    }

    @Test
    void theDivisorLatchAndScratchKeepTheirValues() {
        Uart16550 uart = new Uart16550(line -> { });
        uart.write(3, 0x80);
        uart.write(0, 0x01);
        uart.write(1, 0x02);
        assertEquals(0x0201, uart.divisor());
        assertEquals(0x01, uart.read(0));
        uart.write(3, 0x03);
        uart.write(7, 0x5a);
        assertEquals(0x5a, uart.read(7));
        assertEquals(0x03, uart.read(3));
        assertEquals(0x01, uart.read(2), "no interrupt pending");
        assertThrows(IllegalArgumentException.class, () -> uart.read(8));
    }
}
