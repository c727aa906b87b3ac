package io.actovisor.devices.edu;

import io.actovisor.kernel.vfio.VfioAbi;
import io.actovisor.kernel.vfio.VfioDevice;
import java.time.Duration;
import java.util.Objects;

/**
 * A driver for QEMU's educational PCI device ({@code -device edu}, PCI id 1234:11e8) passed through with VFIO: the
 * smallest real PCI function with a DMA engine, used to show what a device sees of guest RAM through a real type1
 * IOMMU mapping.
 *
 * <p>The device (QEMU's {@code docs/specs/edu}) has one 1 MiB MMIO BAR. Registers below 0x80 take 4-byte accesses
 * only; the DMA registers take 4 or 8. A 4-byte write to a DMA register sets the whole 64-bit field, which is all
 * the 28-bit DMA mask needs, so this driver uses 4-byte accesses throughout. The DMA engine copies between a bus
 * address (an IOVA, translated by the IOMMU) and a 4 KiB buffer inside the device at device address 0x40000; the
 * buffer cannot be read through the BAR, so what the device holds is read back by a second DMA into memory the CPU
 * can see.
 *
 * <p>Not thread-safe: one owner drives the device, as one owner holds the {@link VfioDevice}. Closing the
 * {@code VfioDevice} is its owner's business; this driver only borrows it.
 */
public final class EduDevice {
    /** PCI vendor id of QEMU's edu device. */
    public static final int VENDOR = 0x1234;
    /** PCI device id of QEMU's edu device. */
    public static final int DEVICE = 0x11e8;
    /** Size of the DMA buffer inside the device. */
    public static final int BUFFER_SIZE = 4096;
    /** Device address of the DMA buffer. */
    public static final long BUFFER_ADDRESS = 0x40000;
    /**
     * Where a transfer may end at most in the buffer. QEMU 7.2 (Debian 12's) checks the range with a strict
     * comparison and stops the whole VM with "DMA range ... out of bounds" when a transfer ends exactly at the end
     * of the buffer, so the last byte is left out.
     */
    public static final int MAX_TRANSFER_END = BUFFER_SIZE - 1;
    /** The device's default DMA mask: 28 bits, so bus addresses below 256 MiB. */
    public static final long DMA_MASK = (1L << 28) - 1;

    static final int REG_ID = 0x00;
    static final int REG_LIVENESS = 0x04;
    static final int REG_DMA_SOURCE = 0x80;
    static final int REG_DMA_DESTINATION = 0x88;
    static final int REG_DMA_COUNT = 0x90;
    static final int REG_DMA_COMMAND = 0x98;
    static final int DMA_START = 0x1;
    static final int DMA_TO_RAM = 0x2;

    private final VfioDevice device;
    private final Duration dmaTimeout;

    private EduDevice(VfioDevice device, Duration dmaTimeout) {
        this.device = device;
        this.dmaTimeout = dmaTimeout;
    }

    /**
     * Drive {@code device}, which must be an edu function: its BAR0 is checked to be 1 MiB and its identification
     * register to end in 0xed. A transfer that has not finished after {@code dmaTimeout} fails.
     *
     * @throws IllegalArgumentException if the device is not an edu device
     */
    public static EduDevice attach(VfioDevice device, Duration dmaTimeout) {
        Objects.requireNonNull(device, "device");
        Objects.requireNonNull(dmaTimeout, "dmaTimeout");
        int vendor = (int) device.readConfig(VfioAbi.Pci.VENDOR_ID, 2);
        int id = (int) device.readConfig(VfioAbi.Pci.DEVICE_ID, 2);
        if (vendor != VENDOR || id != DEVICE) {
            throw new IllegalArgumentException(String.format("device %s is %04x:%04x, not QEMU's edu device %04x:%04x",
                    device.name(), vendor, id, VENDOR, DEVICE));
        }
        long bar = device.regionInfo(VfioAbi.Pci.BAR0_REGION_INDEX).size();
        if (bar != 1 << 20) {
            throw new IllegalArgumentException("device " + device.name() + " has a BAR0 of " + bar
                    + " bytes; the edu device has 1 MiB");
        }
        EduDevice edu = new EduDevice(device, dmaTimeout);
        if ((edu.identification() & 0xff) != 0xed) {
            throw new IllegalArgumentException("device " + device.name() + " identification register reads 0x"
                    + Integer.toHexString(edu.identification()) + "; the edu device's ends in 0xed");
        }
        return edu;
    }

    /** The borrowed VFIO device. */
    public VfioDevice device() {
        return device;
    }

    /** The identification register: {@code 0xRRrr00ed}, major and minor version in the top bytes. */
    public int identification() {
        return (int) device.read(VfioAbi.Pci.BAR0_REGION_INDEX, REG_ID, 4);
    }

    /** The liveness check: the device answers the bitwise inverse of {@code value}. */
    public int liveness(int value) {
        device.write(VfioAbi.Pci.BAR0_REGION_INDEX, REG_LIVENESS, 4, Integer.toUnsignedLong(value));
        return (int) device.read(VfioAbi.Pci.BAR0_REGION_INDEX, REG_LIVENESS, 4);
    }

    /** DMA {@code count} bytes from bus address {@code iova} into the device's buffer at {@code bufferOffset}. */
    public void copyToDevice(long iova, int bufferOffset, int count) {
        transfer(iova, BUFFER_ADDRESS + checkBuffer(bufferOffset, count), count, DMA_START);
    }

    /** DMA {@code count} bytes from the device's buffer at {@code bufferOffset} to bus address {@code iova}. */
    public void copyFromDevice(int bufferOffset, long iova, int count) {
        transfer(BUFFER_ADDRESS + checkBuffer(bufferOffset, count), iova, count, DMA_START | DMA_TO_RAM);
    }

    private static long checkBuffer(int offset, int count) {
        if (count <= 0 || offset < 0 || offset + count > MAX_TRANSFER_END) {
            throw new IllegalArgumentException("edu DMA of " + count + " bytes at buffer offset " + offset
                    + " must end at or before byte " + MAX_TRANSFER_END + " of the device's " + BUFFER_SIZE
                    + "-byte buffer");
        }
        return offset;
    }

    private void transfer(long source, long destination, int count, int command) {
        long bus = (command & DMA_TO_RAM) != 0 ? destination : source;
        if (bus < 0 || bus + count - 1 > DMA_MASK) {
            throw new IllegalArgumentException("edu DMA bus address 0x" + Long.toHexString(bus) + " (+" + count
                    + " bytes) is outside the device's 28-bit DMA mask");
        }
        if (busy()) {
            throw new IllegalStateException("edu device " + device.name() + " is still running a DMA transfer");
        }
        int bar = VfioAbi.Pci.BAR0_REGION_INDEX;
        device.write(bar, REG_DMA_SOURCE, 4, source);
        device.write(bar, REG_DMA_DESTINATION, 4, destination);
        device.write(bar, REG_DMA_COUNT, 4, count);
        device.write(bar, REG_DMA_COMMAND, 4, command);
        long deadline = System.nanoTime() + dmaTimeout.toNanos();
        while (busy()) {
            if (System.nanoTime() - deadline > 0) {
                throw new IllegalStateException("edu device " + device.name() + " did not finish a " + count
                        + "-byte DMA within " + dmaTimeout.toMillis() + " ms");
            }
            try {
                Thread.sleep(1);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException("interrupted while waiting for an edu DMA transfer", e);
            }
        }
    }

    private boolean busy() {
        return (device.read(VfioAbi.Pci.BAR0_REGION_INDEX, REG_DMA_COMMAND, 4) & DMA_START) != 0;
    }
}
