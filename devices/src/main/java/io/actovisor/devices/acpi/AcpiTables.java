package io.actovisor.devices.acpi;

import io.actovisor.memory.GuestAddress;
import io.actovisor.memory.GuestMemory;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * The ACPI tables of a VM without firmware (ACPI 6.5, chapter 5.2): an RSDP pointing to an XSDT that lists a
 * hardware-reduced FADT (no PM timer, no SCI, no fixed-feature hardware) with its DSDT, and a MADT with each
 * vCPU's local APIC and the I/O APIC. The DSDT describes COM1 ({@code PNP0501}) and one {@code LNRO0005} device (virtio-mmio, the id Linux's
 * {@code virtio_mmio} driver matches) per virtio-mmio window, with its registers and its interrupt, so a stock kernel
 * without {@code CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES} finds them. The boot flags say there is no VGA and no CMOS
 * RTC, which the VM does not emulate.
 */
public final class AcpiTables {
    /** Where the local APICs are (the architectural default). */
    public static final long LOCAL_APIC_ADDRESS = 0xfee00000L;
    /** Where the I/O APIC is (the architectural default; KVM's in-kernel I/O APIC sits here). */
    public static final long IO_APIC_ADDRESS = 0xfec00000L;
    /** COM1's ports and interrupt, as the DSDT describes them (the Linux guest's console is there). */
    public static final int COM1_PORT = 0x3f8;
    public static final int COM1_GSI = 4;
    public static final String OEM_ID = "ACTOVS";
    public static final String OEM_TABLE_ID = "ACTOVSOR";

    static final int HEADER_SIZE = 36;
    static final int RSDP_SIZE = 36;
    static final int FADT_SIZE = 276;
    private static final int FADT_REVISION = 6;
    private static final int FADT_FLAGS = 112;
    private static final int FADT_HW_REDUCED_ACPI = 1 << 20;
    private static final int FADT_BOOT_ARCH = 109;
    private static final int BOOT_ARCH_VGA_NOT_PRESENT = 1 << 2;
    private static final int BOOT_ARCH_CMOS_RTC_NOT_PRESENT = 1 << 5;
    private static final int FADT_DSDT = 40;
    private static final int FADT_MINOR_VERSION = 131;
    private static final int FADT_X_DSDT = 140;
    private static final int MADT_PCAT_COMPAT = 1;

    /**
     * A virtio-mmio device as the DSDT describes it.
     *
     * @param base  the guest-physical address of its registers
     * @param size  bytes of its register window
     * @param gsi   its interrupt (an I/O APIC input), level-triggered and active high
     */
    public record VirtioMmioDevice(long base, long size, int gsi) {
    }

    /** Where the tables went: the RSDP's address, for {@code boot_params.acpi_rsdp_addr}, and the bytes used. */
    public record Placement(long rsdp, long end) {
    }

    private AcpiTables() {
    }

    /**
     * Write the tables for {@code vcpus} vCPUs and {@code virtio} devices into guest RAM at {@code base} (the RSDP
     * first, 16-byte aligned; Linux scans 0xe0000-0xfffff for it when the boot loader does not say where it is);
     * at most {@code limit} bytes.
     */
    public static Placement write(GuestMemory memory, long base, long limit, int vcpus,
            List<VirtioMmioDevice> virtio) {
        if (base % 16 != 0) {
            throw new IllegalArgumentException("the RSDP must be 16-byte aligned, not at 0x" + Long.toHexString(base));
        }
        long xsdt = base + 64;
        byte[] dsdt = dsdt(virtio);
        byte[] madt = madt(vcpus);
        long fadtAt = align(xsdt + HEADER_SIZE + 2 * 8);
        long madtAt = align(fadtAt + FADT_SIZE);
        long dsdtAt = align(madtAt + madt.length);
        long end = dsdtAt + dsdt.length;
        if (end - base > limit) {
            throw new IllegalArgumentException("the ACPI tables need " + (end - base) + " bytes; " + limit
                    + " are reserved for them");
        }
        memory.write(new GuestAddress(base), rsdp(xsdt));
        memory.write(new GuestAddress(xsdt), xsdt(List.of(fadtAt, madtAt)));
        memory.write(new GuestAddress(fadtAt), fadt(dsdtAt));
        memory.write(new GuestAddress(madtAt), madt);
        memory.write(new GuestAddress(dsdtAt), dsdt);
        return new Placement(base, end);
    }

    private static long align(long address) {
        return (address + 15) & ~15L;
    }

    /** The RSDP, revision 2 (ACPI 6.5, 5.2.5.3): its first 20 bytes and all 36 bytes each sum to zero. */
    static byte[] rsdp(long xsdt) {
        ByteBuffer b = ByteBuffer.allocate(RSDP_SIZE).order(ByteOrder.LITTLE_ENDIAN);
        b.put("RSD PTR ".getBytes(StandardCharsets.US_ASCII));
        b.put((byte) 0);
        b.put(OEM_ID.getBytes(StandardCharsets.US_ASCII));
        b.put((byte) 2);
        b.putInt(0);
        b.putInt(RSDP_SIZE);
        b.putLong(xsdt);
        byte[] out = b.array();
        out[8] = checksum(out, 0, 20);
        out[32] = checksum(out, 0, RSDP_SIZE);
        return out;
    }

    static byte[] xsdt(List<Long> tables) {
        ByteBuffer b = header("XSDT", 1, HEADER_SIZE + 8 * tables.size());
        tables.forEach(b::putLong);
        return finish(b);
    }

    /** A hardware-reduced FADT, revision 6 (ACPI 6.5, 5.2.9). */
    static byte[] fadt(long dsdt) {
        ByteBuffer b = header("FACP", FADT_REVISION, FADT_SIZE);
        b.putInt(FADT_DSDT, (int) dsdt);
        b.putShort(FADT_BOOT_ARCH, (short) (BOOT_ARCH_VGA_NOT_PRESENT | BOOT_ARCH_CMOS_RTC_NOT_PRESENT));
        b.putInt(FADT_FLAGS, FADT_HW_REDUCED_ACPI);
        b.put(FADT_MINOR_VERSION, (byte) 5);
        b.putLong(FADT_X_DSDT, dsdt);
        return finish(b);
    }

    /** The MADT (ACPI 6.5, 5.2.12): one enabled local APIC per vCPU (APIC id = vCPU id) and one I/O APIC. */
    static byte[] madt(int vcpus) {
        if (vcpus < 1 || vcpus > 255) {
            throw new IllegalArgumentException("the MADT describes 1 to 255 vCPUs, not " + vcpus);
        }
        int length = HEADER_SIZE + 8 + 8 * vcpus + 12;
        ByteBuffer b = header("APIC", 5, length);
        b.putInt((int) LOCAL_APIC_ADDRESS);
        b.putInt(MADT_PCAT_COMPAT);
        for (int id = 0; id < vcpus; id++) {
            b.put((byte) 0).put((byte) 8).put((byte) id).put((byte) id).putInt(1);
        }
        b.put((byte) 1).put((byte) 12).put((byte) 0).put((byte) 0).putInt((int) IO_APIC_ADDRESS).putInt(0);
        return finish(b);
    }

    /**
     * The DSDT: {@code \_SB} holds COM1 and one {@code LNRO0005} device per virtio-mmio window.
     *
     * <p>COM1 must be there: with a hardware-reduced FADT Linux has no legacy PIC and maps no ISA interrupt by
     * default ({@code acpi_reduced_hw_init}: "preallocated irqs: 0"), so the 8250 driver's built-in port at 0x3f8
     * could not get IRQ 4 and the console would have no interrupts (the kernel's own messages, which poll, still
     * print; user space's output and input would not move). Described as a {@code PNP0501} with its ports and an
     * edge-triggered, active-high interrupt on GSI 4 (as QEMU and Firecracker describe it), it is claimed by
     * 8250_pnp, whose interrupt goes through the I/O APIC's pin 4.
     */
    static byte[] dsdt(List<VirtioMmioDevice> virtio) {
        List<byte[]> devices = new ArrayList<>();
        devices.add(Aml.device("COM1", List.of(
                Aml.name("_HID", Aml.string("PNP0501")),
                Aml.name("_UID", Aml.integer(1)),
                Aml.name("_CRS", Aml.resourceTemplate(List.of(
                        Aml.io(COM1_PORT, 8),
                        Aml.interrupt(COM1_GSI, true, false, false)))))));
        for (int i = 0; i < virtio.size(); i++) {
            VirtioMmioDevice d = virtio.get(i);
            devices.add(Aml.device(String.format("VR%02X", i), List.of(
                    Aml.name("_HID", Aml.string("LNRO0005")),
                    Aml.name("_UID", Aml.integer(i)),
                    Aml.name("_CRS", Aml.resourceTemplate(List.of(
                            Aml.memory32Fixed(true, d.base(), d.size()),
                            Aml.interrupt(d.gsi(), false, false, false)))))));
        }
        byte[] aml = Aml.scope("\\_SB", devices);
        ByteBuffer b = header("DSDT", 2, HEADER_SIZE + aml.length);
        b.put(aml);
        return finish(b);
    }

    private static ByteBuffer header(String signature, int revision, int length) {
        ByteBuffer b = ByteBuffer.allocate(length).order(ByteOrder.LITTLE_ENDIAN);
        b.put(signature.getBytes(StandardCharsets.US_ASCII));
        b.putInt(length);
        b.put((byte) revision);
        b.put((byte) 0);
        b.put(OEM_ID.getBytes(StandardCharsets.US_ASCII));
        b.put(OEM_TABLE_ID.getBytes(StandardCharsets.US_ASCII));
        b.putInt(1);
        b.put("ACTV".getBytes(StandardCharsets.US_ASCII));
        b.putInt(1);
        return b;
    }

    private static byte[] finish(ByteBuffer b) {
        byte[] out = b.array();
        out[9] = checksum(out, 0, out.length);
        return out;
    }

    /** The byte that makes {@code bytes[from, from + length)} sum to zero (mod 256), given that it is zero now. */
    static byte checksum(byte[] bytes, int from, int length) {
        int sum = 0;
        for (int i = from; i < from + length; i++) {
            sum += bytes[i];
        }
        return (byte) -sum;
    }
}
