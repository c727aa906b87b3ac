package io.actovisor.devices.i8042;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

/** Linux's keyboard-controller reboot: wait for an empty input buffer on 0x64, then write 0xfe there. */
class I8042Test {
    @Test
    void commandFeOnPort64PulsesTheResetLine() {
        AtomicInteger resets = new AtomicInteger();
        I8042 controller = new I8042(resets::incrementAndGet);
        assertEquals(0, controller.read(I8042.COMMAND_PORT) & 0x02, "input buffer empty");
        controller.write(I8042.DATA_PORT, 0xfe);
        controller.write(I8042.COMMAND_PORT, 0xad);
        assertEquals(0, resets.get(), "only 0xfe on the command port resets");
        controller.write(I8042.COMMAND_PORT, 0xfe);
        assertEquals(1, resets.get());
        assertEquals(1, controller.resets());
        assertThrows(IllegalArgumentException.class, () -> controller.read(0x61));
    }
}
