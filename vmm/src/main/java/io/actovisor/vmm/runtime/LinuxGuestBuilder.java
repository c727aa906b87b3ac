package io.actovisor.vmm.runtime;

import io.actovisor.actors.linux.LinuxGuest;
import io.actovisor.actors.vm.VmTopology;
import io.actovisor.config.VmSpec;
import io.actovisor.devices.boot.linux.BzImage;
import io.actovisor.devices.boot.linux.Initramfs;
import io.actovisor.devices.boot.linux.KernelLocator;
import io.actovisor.devices.boot.linux.LinuxBoot;
import io.actovisor.devices.boot.linux.LinuxBootException;
import io.actovisor.kernel.kvm.DeferredIrqLine;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.RegionKind;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * The Linux guest of a {@code guest.kind = linux} VM: resolves {@code kernel = auto} and {@code initrd = auto},
 * loads and checks the kernel, and lays out the virtio-mmio devices (one GSI each from
 * {@link LinuxGuest#FIRST_VIRTIO_GSI}). Every check against the kernel's limits runs here, before the VM exists.
 */
final class LinuxGuestBuilder {
    private LinuxGuestBuilder() {
    }

    /** One interrupt line per virtio-mmio device of {@code spec} (by device name), in memory-map order. */
    static Map<String, DeferredIrqLine> interruptLines(VmSpec spec) {
        Map<String, DeferredIrqLine> lines = new LinkedHashMap<>();
        if (spec.balloon().enabled()) {
            lines.put("balloon", new DeferredIrqLine());
        }
        if (spec.devices().blk().isPresent()) {
            lines.put("blk", new DeferredIrqLine());
        }
        return lines;
    }

    /** The guest of {@code spec}, whose virtio devices drive {@code lines}. */
    static VmTopology.Guest guest(VmSpec spec, Map<String, DeferredIrqLine> lines) {
        VmSpec.Guest g = spec.guest();
        Path kernelFile = g.kernel().equals(VmSpec.Guest.AUTO) ? KernelLocator.newestKernel().orElseThrow(
                () -> new LinuxBootException("guest.kernel = auto found no readable /boot/vmlinuz-* (install a "
                        + "kernel, e.g. the Debian package linux-image-amd64, or set guest.kernel)"))
                : Path.of(g.kernel());
        BzImage kernel = BzImage.load(kernelFile, KernelLocator.cacheDirectory());
        Optional<LinuxBoot.Initrd> initrd = initrd(g.initrd(), kernelFile);
        List<LinuxGuest.VirtioSlot> virtio = new ArrayList<>();
        int gsi = LinuxGuest.FIRST_VIRTIO_GSI;
        for (VmSpec.Region r : spec.memory()) {
            if (r.kind() == RegionKind.MMIO && r.device().isPresent() && lines.containsKey(r.device().get())) {
                virtio.add(new LinuxGuest.VirtioSlot(r.device().get(), r.range().base(), gsi++,
                        lines.get(r.device().get())));
            }
        }
        List<AddressRange> ram = spec.memory().stream().filter(r -> r.kind() == RegionKind.RAM)
                .map(VmSpec.Region::range).sorted().toList();
        LinuxBoot.plan(ram, kernel, initrd, g.cmdline());
        return VmTopology.Guest.linux(new LinuxGuest(kernel, initrd, g.cmdline(), virtio), spec.vcpus());
    }

    private static Optional<LinuxBoot.Initrd> initrd(String initrd, Path kernelFile) {
        if (initrd.equals(VmSpec.Guest.NONE)) {
            return Optional.empty();
        }
        Path file = Path.of(initrd);
        if (initrd.equals(VmSpec.Guest.AUTO)) {
            Path busybox = Initramfs.findBusybox().orElseThrow(() -> new LinuxBootException("guest.initrd = auto "
                    + "needs a statically linked busybox (/bin/busybox or /usr/bin/busybox: the Debian package "
                    + "busybox-static), or set guest.initrd to a file"));
            file = Initramfs.cached(new Initramfs.Inputs(busybox, Initramfs.moduleTreeOf(kernelFile),
                    Initramfs.DEFAULT_MODULES), KernelLocator.cacheDirectory());
        }
        try {
            return Optional.of(new LinuxBoot.Initrd(file.toString(), Files.readAllBytes(file)));
        } catch (IOException e) {
            throw new LinuxBootException("cannot read the initrd " + file + ": " + e, e);
        }
    }
}
