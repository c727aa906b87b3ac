package io.actovisor.actors.vm;

import io.actovisor.actors.device.DeviceIo;
import io.actovisor.actors.device.DeviceTimeouts;
import io.actovisor.actors.kvm.IoMap;
import io.actovisor.actors.kvm.VcpuHandle;
import io.actovisor.actors.linux.ConsoleActor;
import io.actovisor.actors.linux.I8042Actor;
import io.actovisor.actors.linux.LinuxGuest;
import io.actovisor.actors.linux.LinuxGuestEvent;
import io.actovisor.devices.boot.linux.LinuxBoot;
import io.actovisor.devices.i8042.I8042;
import io.actovisor.kernel.kvm.CpuidEntries;
import io.actovisor.kernel.kvm.InterruptLine;
import io.actovisor.kernel.kvm.Kvm;
import io.actovisor.kernel.kvm.KvmVcpu;
import io.actovisor.kernel.kvm.KvmVm;
import io.actovisor.devices.serial.Uart16550;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.FlatView;
import io.actovisor.memory.GuestMemory;
import io.actovisor.memory.RegionKind;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.javadsl.ActorContext;

/**
 * The Linux part of a {@link VmActor}'s start: load the kernel, initrd, command line and ACPI tables into guest RAM
 * once the memory map is committed, then spawn the console (COM1, IRQ 4), the i8042 and the VM's devices, create
 * every vCPU (vCPU 0 at the kernel's 64-bit entry, the others waiting for the kernel's INIT/SIPI in the in-kernel
 * local APIC) and run them all.
 */
final class LinuxGuestStart {
    // Its own logger: the VM actor's context logger takes the name of the class that first uses it.
    private static final org.slf4j.Logger LOG = org.slf4j.LoggerFactory.getLogger(LinuxGuestStart.class);

    private LinuxGuestStart() {
    }

    /** Load the guest into the VM's RAM, as {@code memory} (the committed memory map) has it. */
    static LinuxBoot.Loaded load(VmTopology.Guest guest, GuestMemory memory) {
        LinuxGuest linux = guest.linux().orElseThrow();
        FlatView view = memory.view();
        List<AddressRange> ram = view.sections().stream().filter(s -> s.kind() == RegionKind.RAM)
                .map(s -> s.range()).sorted().toList();
        String cmdline = linux.cmdline();
        if (Kvm.emulatesGuestKernels()) {
            // KVM-PVM emulates the guest kernel; keep Linux off the instructions its emulator lacks.
            cmdline = (cmdline + " " + LinuxBoot.EMULATED_KVM_PARAMETERS).strip();
        }
        return LinuxBoot.load(memory, ram, linux.kernel(), linux.initrd(), cmdline,
                guest.vcpus(), linux.acpiDevices());
    }

    /** Spawn the devices and vCPUs and start them; returns the vCPUs' handles. */
    static List<VcpuHandle> start(ActorContext<VmActor.Command> context, VmTopology topology,
            VmTopology.Guest guest, Kvm kvm, KvmVm vm, LinuxBoot.Loaded loaded, VmActor.Components components,
            Map<String, ActorRef<DeviceIo.Command>> devices, ActorRef<LinuxGuestEvent> linuxObserver,
            ActorRef<VcpuHandle.Event> vcpuObserver) {
        LinuxGuest linux = guest.linux().orElseThrow();
        List<IoMap.Entry> io = new ArrayList<>();
        ActorRef<DeviceIo.Command> console = context.spawn(ConsoleActor.create("com1", topology.name(),
                new InterruptLine(vm, LinuxGuest.COM1_GSI), linuxObserver.narrow()), "com1");
        devices.put("console", console);
        io.add(new IoMap.Entry(DeviceIo.Space.PIO, AddressRange.of(Uart16550.COM1, Uart16550.PORTS), "com1",
                console));
        ActorRef<DeviceIo.Command> i8042 = context.spawn(I8042Actor.create(topology.name(), linuxObserver.narrow()),
                "i8042");
        io.add(new IoMap.Entry(DeviceIo.Space.PIO, AddressRange.of(I8042.DATA_PORT, 1), "i8042", i8042));
        io.add(new IoMap.Entry(DeviceIo.Space.PIO, AddressRange.of(I8042.COMMAND_PORT, 1), "i8042", i8042));
        for (LinuxGuest.VirtioSlot slot : linux.virtio()) {
            slot.line().connect(new InterruptLine(vm, slot.gsi()));
        }
        for (VmTopology.Device d : topology.devices()) {
            devices.put(d.name(), context.spawn(d.factory().apply(components), "device-" + d.name(),
                    DeviceWiring.props(d)));
        }
        for (var region : topology.regions()) {
            if (region.kind() == RegionKind.MMIO && region.device().isPresent()) {
                ActorRef<DeviceIo.Command> device = devices.get(region.device().get());
                if (device == null) {
                    throw new IllegalStateException("MMIO region " + region.name() + " names device '"
                            + region.device().get() + "', which the VM does not have (devices: "
                            + devices.keySet() + ")");
                }
                io.add(new IoMap.Entry(DeviceIo.Space.MMIO, region.range(), region.device().get(), device));
            }
        }
        IoMap map = new IoMap(io);
        CpuidEntries cpuid = kvm.supportedCpuid();
        List<VcpuHandle> vcpus = new ArrayList<>();
        DeviceTimeouts timeouts = DeviceTimeouts.of(context.getSystem());
        try {
            for (int id = 0; id < guest.vcpus(); id++) {
                KvmVcpu vcpu = vm.createVcpu(id);
                try {
                    if (id == 0) {
                        LinuxBoot.enter(vcpu, LinuxBoot.cpuid(cpuid, 0), loaded);
                    } else {
                        vcpu.setCpuid(LinuxBoot.cpuid(cpuid, id));
                        LinuxBoot.setMsrs(vcpu);
                    }
                } catch (RuntimeException e) {
                    vcpu.close();
                    throw e;
                }
                vcpus.add(VcpuHandle.spawn(vcpu, map, vcpuObserver, context.getSystem().scheduler(), timeouts,
                        topology.name() + "-" + id));
            }
        } catch (RuntimeException e) {
            // The VM never sees these handles: their threads end here, closing their vCPUs.
            vcpus.forEach(VcpuHandle::stop);
            throw e;
        }
        vcpus.forEach(VcpuHandle::start);
        LOG.info("VM {}: Linux {} entered at 0x{} with {} vCPUs, initrd {} bytes at 0x{}",
                topology.name(), linux.kernel().source(), Long.toHexString(loaded.entry()), guest.vcpus(),
                loaded.initrdSize(), Long.toHexString(loaded.initrdAddress()));
        return vcpus;
    }
}
