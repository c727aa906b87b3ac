package io.actovisor.devices.serial;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import org.junit.jupiter.api.Test;

/** The probes Linux's 8250 driver runs on COM1, and the interrupt line's level. */
class InterruptingUartTest {
    @Test
    void linuxsAutoconfigSeesA16550aWithWorkingLoopback() {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        InterruptingUart uart = new InterruptingUart(out::write);
        uart.write(1, 0);
        assertEquals(0, uart.read(1) & 0x0f);
        uart.write(1, 0x0f);
        assertEquals(0x0f, uart.read(1) & 0x0f, "IER keeps its four bits (the scratch test)");
        uart.write(1, 0);
        uart.write(4, 0x10 | 0x0a);
        assertEquals(0x90, uart.read(6) & 0xf0, "loopback: OUT2 -> DCD, RTS -> CTS");
        uart.write(0, 'x');
        assertEquals(0, out.size(), "in loopback a byte is received, not sent");
        assertEquals(0x01, uart.read(5) & 0x01);
        assertEquals('x', uart.read(0));
        uart.write(4, 0x0b);
        uart.write(2, 0x01);
        assertEquals(0xc0, uart.read(2) & 0xc0, "FIFOs enabled: a 16550A");
        uart.write(0, 'y');
        assertEquals("y", out.toString());
    }

    @Test
    void theLineIsHighOnlyWhileAnEnabledInterruptIsPending() {
        InterruptingUart uart = new InterruptingUart(b -> { });
        uart.receive(new byte[] {'a'});
        assertFalse(uart.interruptLine(), "receive interrupts are not enabled yet");
        uart.write(1, 0x01);
        assertTrue(uart.interruptLine());
        assertEquals(0x04, uart.read(2) & 0x0f);
        assertEquals('a', uart.read(0));
        assertFalse(uart.interruptLine());
        assertEquals(0x01, uart.read(2) & 0x0f);
    }
}
