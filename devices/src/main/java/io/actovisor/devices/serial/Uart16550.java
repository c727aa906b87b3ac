package io.actovisor.devices.serial;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.function.Consumer;

/**
 * A guest console on a 16550A: the registers are an {@link InterruptingUart} (one register model for every
 * console), and what the guest transmits is delivered a line at a time (CR dropped, LF ends a line, lines longer
 * than 4 KiB are cut). This console has no input and its owner wires no interrupt line, so a guest that enables
 * interrupts sees them pending in IIR but never receives one: the firmware guests poll LSR. Pure Java, single owner.
 */
public final class Uart16550 {
    /** COM1's base port. */
    public static final int COM1 = 0x3f8;
    /** Eight consecutive ports. */
    public static final int PORTS = 8;

    private static final int MAX_LINE = 4096;

    private final Consumer<String> lines;
    private final ByteArrayOutputStream line = new ByteArrayOutputStream();
    private final InterruptingUart registers = new InterruptingUart(this::transmit);

    /** A UART whose completed output lines go to {@code lines}. */
    public Uart16550(Consumer<String> lines) {
        this.lines = lines;
    }

    /** A guest read of the register at {@code offset} (0-7). */
    public int read(int offset) {
        return registers.read(offset);
    }

    /** A guest write of {@code value} to the register at {@code offset} (0-7). */
    public void write(int offset, int value) {
        registers.write(offset, value);
    }

    private void transmit(int b) {
        if (b == '\n' || line.size() >= MAX_LINE) {
            flush();
        } else if (b != '\r') {
            line.write(b);
        }
    }

    /** Deliver a partial line, if any (at shutdown). */
    public void flush() {
        if (line.size() > 0) {
            lines.accept(line.toString(StandardCharsets.UTF_8));
            line.reset();
        }
    }

    /** Bytes the guest has transmitted. */
    public long bytesWritten() {
        return registers.transmitted();
    }

    /** The baud-rate divisor the guest programmed. */
    public int divisor() {
        return registers.divisor();
    }
}
