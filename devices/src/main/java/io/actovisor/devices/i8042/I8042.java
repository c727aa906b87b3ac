package io.actovisor.devices.i8042;

/**
 * Just enough of the PC's i8042 keyboard controller for a guest to reset the machine: its status register (port
 * 0x64) always reads "buffers empty", its data port (0x60) reads 0, and the command 0xfe ("pulse the reset line")
 * written to port 0x64 is what Linux's {@code reboot=k} and its fallback reboot path do. There is no keyboard or
 * mouse behind it; the ACPI FADT tells the guest there is no 8042, so Linux's i8042 driver does not probe it.
 */
public final class I8042 {
    /** The data port. */
    public static final int DATA_PORT = 0x60;
    /** The status (read) and command (write) port. */
    public static final int COMMAND_PORT = 0x64;
    /** The command that pulses the CPU reset line. */
    public static final int CMD_RESET = 0xfe;

    private final Runnable reset;
    private long resets;

    /** A controller that runs {@code reset} when the guest pulses the reset line. */
    public I8042(Runnable reset) {
        this.reset = reset;
    }

    /** A guest read of {@code port}. */
    public int read(int port) {
        return switch (port) {
            case DATA_PORT, COMMAND_PORT -> 0;
            default -> throw new IllegalArgumentException("port 0x" + Integer.toHexString(port)
                    + " is not an i8042 port");
        };
    }

    /** A guest write of {@code value} to {@code port}. */
    public void write(int port, int value) {
        if (port == COMMAND_PORT && (value & 0xff) == CMD_RESET) {
            resets++;
            reset.run();
        } else if (port != DATA_PORT && port != COMMAND_PORT) {
            throw new IllegalArgumentException("port 0x" + Integer.toHexString(port) + " is not an i8042 port");
        }
    }

    /** How often the guest asked for a reset. */
    public long resets() {
        return resets;
    }
}
