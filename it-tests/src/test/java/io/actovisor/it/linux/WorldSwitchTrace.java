package io.actovisor.it.linux;

import io.actovisor.memory.AddressRange;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import java.util.OptionalLong;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A flight recorder of the emulated KVM host's guest entries and exits: its kernel's {@code kvm_entry} (with the rip
 * KVM enters the guest at) and {@code kvm_exit} tracepoints, in a small ring buffer. It proves the fault
 * {@link EmulatedHostFault} names when an entry's rip lies in the host's own {@code __svm_vcpu_run}, where no guest
 * runs (the instruction after its VMRUN, whose offset is read from the kvm-amd.ko the host runs, is what the stalls
 * showed), and it shows the last entries and exits before a guest stopped, also when the guest triple-faulted and
 * KVM's reset on the SHUTDOWN intercept took its registers. Armed once per JVM, in the emulated host only, where the
 * test runs as root and the init mounts tracefs; cleared for each new VM.
 */
final class WorldSwitchTrace {
    private static final Logger LOG = LoggerFactory.getLogger(WorldSwitchTrace.class);
    private static final Path TRACING = Path.of("/sys/kernel/tracing");
    private static final Path EVENTS = TRACING.resolve("events/kvm");
    /** Per CPU: some thousand events, the last seconds of a busy guest. */
    private static final int BUFFER_KB = 128;
    private static final Pattern ENTRY = Pattern.compile("kvm_entry: vcpu (\\d+), rip 0x([0-9a-f]+)");
    private static Optional<WorldSwitchTrace> armed;

    /** Where the host's world switch lies, and the rip of its instruction after VMRUN. */
    private final AddressRange worldSwitch;
    private final long afterVmrun;

    private WorldSwitchTrace(AddressRange worldSwitch, long afterVmrun) {
        this.worldSwitch = worldSwitch;
        this.afterVmrun = afterVmrun;
    }

    /** The trace, armed on first use, if this JVM runs in the emulated KVM host and its kernel lets it trace. */
    static synchronized Optional<WorldSwitchTrace> inEmulatedHost() {
        if (armed == null) {
            armed = LinuxVm.IN_EMULATED_HOST ? arm(EmulatedHostFault.hostWorldSwitch()) : Optional.empty();
        }
        return armed;
    }

    private static Optional<WorldSwitchTrace> arm(Optional<AddressRange> extent) {
        Path module;
        try {
            module = Path.of("/lib/modules", Files.readString(Path.of("/proc/sys/kernel/osrelease")).trim(),
                    "kernel/arch/x86/kvm/kvm-amd.ko");
        } catch (IOException e) {
            module = Path.of("/nonexistent");
        }
        OptionalLong afterVmrun = afterVmrun(module);
        if (extent.isEmpty() || afterVmrun.isEmpty() || !Files.isDirectory(EVENTS.resolve("kvm_entry"))) {
            LOG.warn("no trace of the emulated host's guest entries: {}", extent.isEmpty()
                    ? EmulatedHostFault.WORLD_SWITCH + " [kvm_amd] is not in /proc/kallsyms"
                    : afterVmrun.isEmpty() ? "no VMRUN found in " + module : "no " + EVENTS.resolve("kvm_entry"));
            return Optional.empty();
        }
        try {
            Files.writeString(TRACING.resolve("buffer_size_kb"), Integer.toString(BUFFER_KB));
            for (String event : new String[] {"kvm_entry", "kvm_exit"}) {
                Files.writeString(EVENTS.resolve(event).resolve("enable"), "1");
            }
            WorldSwitchTrace trace = new WorldSwitchTrace(extent.get(), extent.get().base() + afterVmrun.getAsLong());
            trace.clear();
            LOG.info("tracing the emulated host's guest entries and exits; its world switch {} [kvm_amd] is at "
                    + "0x{}-0x{}, the instruction after its VMRUN at 0x{}", EmulatedHostFault.WORLD_SWITCH,
                    Long.toHexString(trace.worldSwitch.base()), Long.toHexString(trace.worldSwitch.end()),
                    Long.toHexString(trace.afterVmrun));
            return Optional.of(trace);
        } catch (IOException | RuntimeException e) {
            LOG.warn("cannot trace the emulated host's guest entries: {}", e.toString());
            return Optional.empty();
        }
    }

    /** Forget what earlier VMs' entries left in the trace. */
    void clear() {
        try {
            Files.writeString(TRACING.resolve("trace"), "");
        } catch (IOException e) {
            LOG.warn("cannot clear the trace: {}", e.toString());
        }
    }

    private List<String> events() {
        try {
            return Files.readAllLines(TRACING.resolve("trace")).stream().filter(l -> !l.startsWith("#"))
                    .map(String::trim).toList();
        } catch (IOException | RuntimeException e) {
            return List.of();
        }
    }

    /** The first guest entry at the host's own world switch in the trace, with what it proves. */
    Optional<String> entryAtTheHostsRip() {
        return entryIn(events(), worldSwitch, afterVmrun);
    }

    /**
     * The first {@code kvm_entry} among {@code events} whose rip lies in {@code worldSwitch} (the host's
     * {@link EmulatedHostFault#WORLD_SWITCH}; {@code afterVmrun} is its instruction after VMRUN), with what it proves.
     */
    static Optional<String> entryIn(List<String> events, AddressRange worldSwitch, long afterVmrun) {
        for (String line : events) {
            Matcher m = ENTRY.matcher(line);
            if (m.find()) {
                long rip = Long.parseUnsignedLong(m.group(2), 16);
                if (worldSwitch.contains(rip)) {
                    return Optional.of("the emulated host's KVM entered the guest at its own "
                            + EmulatedHostFault.WORLD_SWITCH + "+0x" + Long.toHexString(rip - worldSwitch.base())
                            + " [kvm_amd]"
                            + (rip == afterVmrun ? " (the instruction after its VMRUN)" : "") + ": its nested SVM "
                            + "(QEMU TCG) stored the host's state in the guest's VMCB; trace: " + line.trim());
                }
            }
        }
        return Optional.empty();
    }

    /** The last {@code n} entries and exits in the trace, one per line, for a failure report. */
    String recent(int n) {
        List<String> events = events();
        return "the emulated host's last " + Math.min(n, events.size()) + " guest entries and exits:\n  "
                + String.join("\n  ", events.subList(Math.max(0, events.size() - n), events.size()));
    }

    /**
     * How far past {@link EmulatedHostFault#WORLD_SWITCH}'s start the instruction after its {@code vmrun}
     * ({@code 0f 01 d8}) lies, read from the module file {@code ko} (an uncompressed ELF64 relocatable object): the
     * symbol's section and value from {@code .symtab}, then its bytes. Empty if the file or the symbol is not there.
     */
    static OptionalLong afterVmrun(Path ko) {
        try {
            ByteBuffer elf = ByteBuffer.wrap(Files.readAllBytes(ko)).order(ByteOrder.LITTLE_ENDIAN);
            if (elf.getInt(0) != 0x464c457f || elf.get(4) != 2) {
                return OptionalLong.empty();
            }
            long sectionHeaders = elf.getLong(0x28);
            int headerSize = Short.toUnsignedInt(elf.getShort(0x3a));
            int sections = Short.toUnsignedInt(elf.getShort(0x3c));
            for (int i = 0; i < sections; i++) {
                int header = (int) (sectionHeaders + (long) i * headerSize);
                if (elf.getInt(header + 4) != 2) { // SHT_SYMTAB
                    continue;
                }
                int symbols = (int) elf.getLong(header + 0x18);
                long count = elf.getLong(header + 0x20) / 24;
                int names = (int) elf.getLong((int) (sectionHeaders + (long) elf.getInt(header + 0x28) * headerSize)
                        + 0x18);
                for (long n = 0; n < count; n++) {
                    int symbol = (int) (symbols + n * 24);
                    if (!EmulatedHostFault.WORLD_SWITCH.equals(cString(elf, names + elf.getInt(symbol)))) {
                        continue;
                    }
                    int section = Short.toUnsignedInt(elf.getShort(symbol + 6));
                    long value = elf.getLong(symbol + 8);
                    long size = elf.getLong(symbol + 16);
                    int code = (int) (elf.getLong((int) (sectionHeaders + (long) section * headerSize) + 0x18) + value);
                    for (int at = 0; at + 3 <= size; at++) {
                        if (elf.get(code + at) == 0x0f && elf.get(code + at + 1) == 0x01
                                && elf.get(code + at + 2) == (byte) 0xd8) {
                            return OptionalLong.of(at + 3);
                        }
                    }
                }
            }
            return OptionalLong.empty();
        } catch (IOException | RuntimeException e) {
            return OptionalLong.empty();
        }
    }

    private static String cString(ByteBuffer elf, int at) {
        int end = at;
        while (elf.get(end) != 0) {
            end++;
        }
        byte[] bytes = new byte[end - at];
        elf.get(at, bytes);
        return new String(bytes, java.nio.charset.StandardCharsets.US_ASCII);
    }
}
