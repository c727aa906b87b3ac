package io.actovisor.actors.linux;

import io.actovisor.devices.acpi.AcpiTables;
import io.actovisor.devices.boot.linux.BzImage;
import io.actovisor.devices.boot.linux.LinuxBoot;
import java.util.List;
import java.util.Objects;
import java.util.Optional;

/**
 * A Linux guest, as a VM boots it: the kernel, the initrd and the command line (loaded by {@link LinuxBoot}), and
 * the virtio-mmio devices the DSDT describes, each with the device name its MMIO region routes to and its GSI.
 */
public record LinuxGuest(BzImage kernel, Optional<LinuxBoot.Initrd> initrd, String cmdline,
        List<VirtioSlot> virtio) {
    /** The console's interrupt: COM1 is ISA IRQ 4. */
    public static final int COM1_GSI = 4;
    /** The first GSI handed to virtio-mmio devices (after the legacy ISA ones Linux may use). */
    public static final int FIRST_VIRTIO_GSI = 5;
    /** The register window of a virtio-mmio device. */
    public static final long VIRTIO_MMIO_SIZE = 0x200;

    public LinuxGuest {
        Objects.requireNonNull(kernel, "kernel");
        Objects.requireNonNull(initrd, "initrd");
        Objects.requireNonNull(cmdline, "cmdline");
        virtio = List.copyOf(virtio);
    }

    /**
     * A virtio-mmio device: the name of its device actor, its register base, its interrupt, and the line its
     * device drives (connected to the GSI when the VM creates its interrupt controller).
     */
    public record VirtioSlot(String device, long base, int gsi, io.actovisor.kernel.kvm.DeferredIrqLine line) {
    }

    /** The DSDT's view of the virtio devices. */
    public List<AcpiTables.VirtioMmioDevice> acpiDevices() {
        return virtio.stream().map(v -> new AcpiTables.VirtioMmioDevice(v.base(), VIRTIO_MMIO_SIZE, v.gsi()))
                .toList();
    }
}
