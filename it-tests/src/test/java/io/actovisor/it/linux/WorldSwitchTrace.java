package io.actovisor.it.linux;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Optional;
import java.util.OptionalLong;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The emulated KVM host's own record of the fault {@link EmulatedHostFault} names: its kernel's {@code kvm_entry}
 * tracepoint (one event per guest entry, with the rip KVM enters the guest at), filtered to entries whose rip lies in
 * the host's own instruction after the VMRUN in {@code __svm_vcpu_run} (its offset read from the kvm-amd.ko the host
 * runs). A guest never runs there, so one such event is the host entering a guest
 * with its own state; it is seen at once, and also when the guest then triple-faults (KVM resets a vCPU on a
 * SHUTDOWN intercept, so the registers no longer show it). Armed once per JVM, in the emulated host only, where the
 * test runs as root and the init mounts tracefs; cleared for each new VM.
 */
final class WorldSwitchTrace {
    private static final Logger LOG = LoggerFactory.getLogger(WorldSwitchTrace.class);
    private static final Path TRACING = Path.of("/sys/kernel/tracing");
    private static final Path EVENT = TRACING.resolve("events/kvm/kvm_entry");
    private static Optional<WorldSwitchTrace> armed;

    /** The rip of the host's instruction after VMRUN, and its offset in {@link EmulatedHostFault#WORLD_SWITCH}. */
    private final long rip;
    private final long offset;

    private WorldSwitchTrace(long rip, long offset) {
        this.rip = rip;
        this.offset = offset;
    }

    /** The trace, armed on first use, if this JVM runs in the emulated KVM host and its kernel lets it trace. */
    static synchronized Optional<WorldSwitchTrace> inEmulatedHost() {
        if (armed == null) {
            armed = LinuxVm.IN_EMULATED_HOST ? arm(GuestSymbols.ofRunningKernel()) : Optional.empty();
        }
        return armed;
    }

    private static Optional<WorldSwitchTrace> arm(GuestSymbols host) {
        Optional<long[]> extent = host.extent(EmulatedHostFault.WORLD_SWITCH, "kvm_amd");
        Path module;
        try {
            module = Path.of("/lib/modules", Files.readString(Path.of("/proc/sys/kernel/osrelease")).trim(),
                    "kernel/arch/x86/kvm/kvm-amd.ko");
        } catch (IOException e) {
            module = Path.of("/nonexistent");
        }
        OptionalLong afterVmrun = afterVmrun(module);
        if (extent.isEmpty() || afterVmrun.isEmpty() || !Files.isDirectory(EVENT)) {
            LOG.warn("no kvm_entry trace of the emulated host's world switch: {}", extent.isEmpty()
                    ? EmulatedHostFault.WORLD_SWITCH + " [kvm_amd] is not in /proc/kallsyms"
                    : afterVmrun.isEmpty() ? "no VMRUN found in " + module : "no " + EVENT);
            return Optional.empty();
        }
        long rip = extent.get()[0] + afterVmrun.getAsLong();
        try {
            Files.writeString(EVENT.resolve("filter"), "rip == 0x" + Long.toHexString(rip));
            Files.writeString(EVENT.resolve("enable"), "1");
            WorldSwitchTrace trace = new WorldSwitchTrace(rip, afterVmrun.getAsLong());
            trace.clear();
            LOG.info("tracing the emulated host's guest entries at rip 0x{} ({}+0x{} [kvm_amd], after its VMRUN)",
                    Long.toHexString(rip), EmulatedHostFault.WORLD_SWITCH, Long.toHexString(afterVmrun.getAsLong()));
            return Optional.of(trace);
        } catch (IOException | RuntimeException e) {
            LOG.warn("cannot trace the emulated host's guest entries: {}", e.toString());
            return Optional.empty();
        }
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

    /** Forget what earlier VMs' entries left in the trace. */
    void clear() {
        try {
            Files.writeString(TRACING.resolve("trace"), "");
        } catch (IOException e) {
            LOG.warn("cannot clear the trace: {}", e.toString());
        }
    }

    /** The first guest entry at the host's own world switch since the last {@link #clear}, as the trace shows it. */
    Optional<String> entryAtTheHostsRip() {
        try {
            return Files.readAllLines(TRACING.resolve("trace")).stream().filter(l -> l.contains("kvm_entry:"))
                    .findFirst().map(String::trim).map(line -> "the emulated host's KVM entered the guest at its own "
                            + "instruction after VMRUN, 0x" + Long.toHexString(rip) + " = "
                            + EmulatedHostFault.WORLD_SWITCH + "+0x" + Long.toHexString(offset) + " [kvm_amd]: its "
                            + "nested SVM (QEMU TCG) stored the host's state in the guest's VMCB; trace: " + line);
        } catch (IOException | RuntimeException e) {
            return Optional.empty();
        }
    }
}
