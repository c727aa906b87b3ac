package io.actovisor.devices.serial;

import java.util.ArrayDeque;
import java.util.function.IntConsumer;

/**
 * A 16550A UART as Linux's 8250 driver probes and drives it: FIFO control (IIR reports FIFOs enabled), a receive
 * queue fed by {@link #receive}, the four interrupt sources' priority in IIR (line status, received data, THR empty,
 * modem status), loopback (MCR bit 4: transmitted bytes come back as received, MSR mirrors MCR) and an interrupt
 * line that is high while an enabled interrupt is pending. Transmission is instant: THR is always empty again
 * after a write, so a THR-empty interrupt follows every write while it is enabled. Pure Java, single owner; the
 * owner drives the real interrupt line from {@link #interruptLine()} after each call.
 */
public final class InterruptingUart {
    /** How many received bytes wait for the guest at most; more are dropped (and counted). */
    public static final int RECEIVE_CAPACITY = 4096;

    private static final int RBR_THR = 0;
    private static final int IER = 1;
    private static final int IIR_FCR = 2;
    private static final int LCR = 3;
    private static final int MCR = 4;
    private static final int LSR = 5;
    private static final int MSR = 6;
    private static final int SCR = 7;

    private static final int LCR_DLAB = 0x80;
    private static final int IER_RDI = 0x01;
    private static final int IER_THRI = 0x02;
    private static final int IER_RLSI = 0x04;
    private static final int IER_MSI = 0x08;
    private static final int IIR_NO_INT = 0x01;
    private static final int IIR_THRI = 0x02;
    private static final int IIR_RDI = 0x04;
    private static final int IIR_FIFOS_ENABLED = 0xc0;
    private static final int FCR_ENABLE_FIFO = 0x01;
    private static final int FCR_CLEAR_RCVR = 0x02;
    private static final int LSR_DR = 0x01;
    private static final int LSR_OE = 0x02;
    private static final int LSR_THRE = 0x20;
    private static final int LSR_TEMT = 0x40;
    private static final int MCR_DTR = 0x01;
    private static final int MCR_RTS = 0x02;
    private static final int MCR_OUT1 = 0x04;
    private static final int MCR_OUT2 = 0x08;
    private static final int MCR_LOOP = 0x10;
    private static final int MSR_CTS = 0x10;
    private static final int MSR_DSR = 0x20;
    private static final int MSR_RI = 0x40;
    private static final int MSR_DCD = 0x80;

    private final IntConsumer transmit;
    private final ArrayDeque<Integer> received = new ArrayDeque<>();
    private int ier;
    private int lcr;
    private int mcr;
    private int scr;
    private int dll = 0x0c;
    private int dlm;
    private boolean fifos;
    private boolean thrEmptyPending;
    private boolean overrun;
    private long transmitted;
    private long dropped;

    /** A UART whose transmitted bytes go to {@code transmit}. */
    public InterruptingUart(IntConsumer transmit) {
        this.transmit = transmit;
    }

    /** A guest read of the register at {@code offset} (0-7). */
    public int read(int offset) {
        return switch (offset) {
            case RBR_THR -> (lcr & LCR_DLAB) != 0 ? dll : takeReceived();
            case IER -> (lcr & LCR_DLAB) != 0 ? dlm : ier;
            case IIR_FCR -> readIir();
            case LCR -> lcr;
            case MCR -> mcr;
            case LSR -> readLsr();
            case MSR -> msr();
            case SCR -> scr;
            default -> throw new IllegalArgumentException("UART register offset " + offset + " is outside 0-7");
        };
    }

    /** A guest write of {@code value} to the register at {@code offset} (0-7). */
    public void write(int offset, int value) {
        int v = value & 0xff;
        switch (offset) {
            case RBR_THR -> {
                if ((lcr & LCR_DLAB) != 0) {
                    dll = v;
                } else {
                    transmitByte(v);
                }
            }
            case IER -> {
                if ((lcr & LCR_DLAB) != 0) {
                    dlm = v;
                } else {
                    boolean thriRising = (v & IER_THRI) != 0 && (ier & IER_THRI) == 0;
                    ier = v & 0x0f;
                    if (thriRising) {
                        // THR is always empty here: enabling the interrupt raises it at once, as on a 16550A.
                        thrEmptyPending = true;
                    }
                }
            }
            case IIR_FCR -> {
                fifos = (v & FCR_ENABLE_FIFO) != 0;
                if ((v & FCR_CLEAR_RCVR) != 0) {
                    received.clear();
                }
            }
            case LCR -> lcr = v;
            case MCR -> mcr = v & 0x1f;
            case LSR, MSR -> {
                // Status registers: writes are ignored.
            }
            case SCR -> scr = v;
            default -> throw new IllegalArgumentException("UART register offset " + offset + " is outside 0-7");
        }
    }

    /** Bytes from the host for the guest to read (its keyboard). Returns how many were queued. */
    public int receive(byte[] bytes) {
        int queued = 0;
        for (byte b : bytes) {
            if (queue(b & 0xff)) {
                queued++;
            }
        }
        return queued;
    }

    /** Whether the interrupt line is high: an enabled interrupt is pending. */
    public boolean interruptLine() {
        return pendingInterrupt() != IIR_NO_INT;
    }

    /** Bytes the guest transmitted. */
    public long transmitted() {
        return transmitted;
    }

    /** The baud-rate divisor the guest programmed (DLM:DLL). */
    public int divisor() {
        return dlm << 8 | dll;
    }

    /** Received bytes dropped because the guest did not read fast enough. */
    public long dropped() {
        return dropped;
    }

    private boolean queue(int b) {
        if (received.size() >= RECEIVE_CAPACITY) {
            dropped++;
            overrun = true;
            return false;
        }
        received.add(b);
        return true;
    }

    private void transmitByte(int v) {
        if ((mcr & MCR_LOOP) != 0) {
            queue(v);
        } else {
            transmitted++;
            transmit.accept(v);
        }
        thrEmptyPending = (ier & IER_THRI) != 0;
    }

    private int takeReceived() {
        Integer b = received.poll();
        return b == null ? 0 : b;
    }

    private int readLsr() {
        int lsr = LSR_THRE | LSR_TEMT | (received.isEmpty() ? 0 : LSR_DR) | (overrun ? LSR_OE : 0);
        overrun = false;
        return lsr;
    }

    private int msr() {
        if ((mcr & MCR_LOOP) == 0) {
            return MSR_CTS | MSR_DSR | MSR_DCD;
        }
        return ((mcr & MCR_RTS) != 0 ? MSR_CTS : 0) | ((mcr & MCR_DTR) != 0 ? MSR_DSR : 0)
                | ((mcr & MCR_OUT1) != 0 ? MSR_RI : 0) | ((mcr & MCR_OUT2) != 0 ? MSR_DCD : 0);
    }

    /** The highest-priority pending interrupt's IIR code, or IIR_NO_INT. */
    private int pendingInterrupt() {
        if ((ier & IER_RLSI) != 0 && overrun) {
            return 0x06;
        }
        if ((ier & IER_RDI) != 0 && !received.isEmpty()) {
            return IIR_RDI;
        }
        if ((ier & IER_THRI) != 0 && thrEmptyPending) {
            return IIR_THRI;
        }
        return IIR_NO_INT;
    }

    private int readIir() {
        int pending = pendingInterrupt();
        if (pending == IIR_THRI) {
            // Reading IIR while THR empty is the source clears that interrupt.
            thrEmptyPending = false;
        }
        return pending | (fifos ? IIR_FIFOS_ENABLED : 0);
    }
}
