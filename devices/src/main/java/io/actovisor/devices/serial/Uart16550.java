package io.actovisor.devices.serial;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.function.Consumer;

/**
 * A 16550-style UART, enough for a guest console: transmit always ready (LSR THRE and TEMT set), no receive
 * data, no interrupts (IIR reads "none pending"), and the divisor latch, line, modem and scratch registers keep
 * what the guest writes. Output is delivered a line at a time (CR dropped, LF ends a line). Pure Java, single
 * owner.
 */
public final class Uart16550 {
    /** COM1's base port. */
    public static final int COM1 = 0x3f8;
    /** Eight consecutive ports. */
    public static final int PORTS = 8;

    private static final int THR_RBR_DLL = 0;
    private static final int IER_DLM = 1;
    private static final int IIR_FCR = 2;
    private static final int LCR = 3;
    private static final int MCR = 4;
    private static final int LSR = 5;
    private static final int MSR = 6;
    private static final int SCR = 7;
    private static final int LCR_DLAB = 0x80;
    private static final int LSR_THRE_TEMT = 0x60;
    private static final int IIR_NONE = 0x01;
    private static final int MSR_CTS_DSR_DCD = 0xb0;
    private static final int MAX_LINE = 4096;

    private final Consumer<String> lines;
    private final ByteArrayOutputStream line = new ByteArrayOutputStream();
    private int ier;
    private int lcr;
    private int mcr;
    private int scr;
    private int dll = 1;
    private int dlm;
    private long bytesWritten;

    /** A UART whose completed output lines go to {@code lines}. */
    public Uart16550(Consumer<String> lines) {
        this.lines = lines;
    }

    /** A guest read of the register at {@code offset} (0-7). */
    public int read(int offset) {
        return switch (offset) {
            case THR_RBR_DLL -> (lcr & LCR_DLAB) != 0 ? dll : 0;
            case IER_DLM -> (lcr & LCR_DLAB) != 0 ? dlm : ier;
            case IIR_FCR -> IIR_NONE;
            case LCR -> lcr;
            case MCR -> mcr;
            case LSR -> LSR_THRE_TEMT;
            case MSR -> MSR_CTS_DSR_DCD;
            case SCR -> scr;
            default -> throw new IllegalArgumentException("UART register offset " + offset + " is outside 0-7");
        };
    }

    /** A guest write of {@code value} to the register at {@code offset} (0-7). */
    public void write(int offset, int value) {
        int v = value & 0xff;
        switch (offset) {
            case THR_RBR_DLL -> {
                if ((lcr & LCR_DLAB) != 0) {
                    dll = v;
                } else {
                    transmit(v);
                }
            }
            case IER_DLM -> {
                if ((lcr & LCR_DLAB) != 0) {
                    dlm = v;
                } else {
                    ier = v & 0x0f;
                }
            }
            case IIR_FCR -> {
                // FIFO control: the model has no FIFO to configure.
            }
            case LCR -> lcr = v;
            case MCR -> mcr = v & 0x1f;
            case LSR, MSR -> {
                // Read-only status registers: writes are ignored, as on hardware.
            }
            case SCR -> scr = v;
            default -> throw new IllegalArgumentException("UART register offset " + offset + " is outside 0-7");
        }
    }

    private void transmit(int b) {
        bytesWritten++;
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
        return bytesWritten;
    }

    /** The baud-rate divisor the guest programmed. */
    public int divisor() {
        return dlm << 8 | dll;
    }
}
