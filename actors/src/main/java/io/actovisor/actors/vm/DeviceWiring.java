package io.actovisor.actors.vm;

import io.actovisor.actors.balloon.VirtioBalloonActor;
import io.actovisor.actors.device.DeviceIo;
import io.actovisor.actors.guest.ScriptedGuestActor;
import io.actovisor.actors.kvm.DelayPortActor;
import io.actovisor.actors.kvm.IoMap;
import io.actovisor.actors.kvm.ReportPortActor;
import io.actovisor.actors.kvm.SerialActor;
import io.actovisor.devices.serial.Uart16550;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.RegionKind;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.Supplier;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Props;
import org.apache.pekko.actor.typed.javadsl.ActorContext;

/**
 * How a VM's devices are spawned and reached: the topology's device actors (each factory sees the components
 * spawned so far), the port devices of a firmware guest, and the address map a vCPU or the scripted guest uses to
 * find the device behind each port and MMIO region.
 */
final class DeviceWiring {
    private DeviceWiring() {
    }

    /** Spawn the topology's devices into {@code devices}, in order; each factory gets the components as of then. */
    static void spawnDevices(ActorContext<?> context, VmTopology topology, Supplier<VmActor.Components> components,
            Map<String, ActorRef<DeviceIo.Command>> devices) {
        for (VmTopology.Device d : topology.devices()) {
            devices.put(d.name(), context.spawn(d.factory().apply(components.get()), "device-" + d.name(),
                    props(d)));
        }
    }

    /** The virtio-balloon runs on the VM's I/O dispatcher with its balloon and discard manager; others: default. */
    static Props props(VmTopology.Device d) {
        return d.role() == VmTopology.Device.Role.VIRTIO_BALLOON ? VirtioBalloonActor.DISPATCHER : Props.empty();
    }

    /**
     * The I/O map of a firmware guest: COM1 (when {@code serial}), the report and delay ports, and every MMIO region
     * that names a device. A region naming a device the VM does not have is an error.
     */
    static IoMap firmwareIoMap(ActorContext<?> context, VmTopology topology, boolean serial,
            Map<String, ActorRef<DeviceIo.Command>> devices) {
        List<IoMap.Entry> io = new ArrayList<>();
        if (serial) {
            io.add(new IoMap.Entry(DeviceIo.Space.PIO, AddressRange.of(Uart16550.COM1, Uart16550.PORTS), "com1",
                    context.spawn(SerialActor.create("com1"), "com1")));
        }
        io.add(new IoMap.Entry(DeviceIo.Space.PIO, AddressRange.of(ReportPortActor.BASE, ReportPortActor.PORTS),
                "reports", context.spawn(ReportPortActor.create(), "reports")));
        io.add(new IoMap.Entry(DeviceIo.Space.PIO, AddressRange.of(DelayPortActor.PORT, 4), "delay",
                context.spawn(DelayPortActor.create(), "delay")));
        for (var region : topology.regions()) {
            if (region.kind() == RegionKind.MMIO && region.device().isPresent()) {
                ActorRef<DeviceIo.Command> device = devices.get(region.device().get());
                if (device == null) {
                    throw new IllegalStateException("MMIO region " + region.name() + " names device '"
                            + region.device().get() + "', which the VM does not have (devices: " + devices.keySet()
                            + ")");
                }
                io.add(new IoMap.Entry(DeviceIo.Space.MMIO, region.range(), region.device().get(), device));
            }
        }
        return new IoMap(io);
    }

    /** The MMIO devices the scripted guest can reach, by the names and bases of their regions. */
    static List<ScriptedGuestActor.Device> scriptedDevices(VmTopology topology,
            Map<String, ActorRef<DeviceIo.Command>> devices) {
        List<ScriptedGuestActor.Device> reachable = new ArrayList<>();
        for (var region : topology.regions()) {
            if (region.kind() == RegionKind.MMIO && region.device().isPresent()
                    && devices.containsKey(region.device().get())) {
                reachable.add(new ScriptedGuestActor.Device(region.device().get(), region.range().base(),
                        devices.get(region.device().get())));
            }
        }
        return reachable;
    }
}
