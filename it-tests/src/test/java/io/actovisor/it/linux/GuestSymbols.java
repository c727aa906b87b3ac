package io.actovisor.it.linux;

import io.actovisor.memory.AddressRange;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.NavigableMap;
import java.util.Optional;
import java.util.TreeMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/**
 * Text symbols of a Linux guest, to name a vCPU's rip in a failure report: the kernel's own from the host's
 * {@code /boot/System.map-<release>} (the VMM loads the kernel at its link address, so they hold as they are) and the
 * modules' from the guest's {@code /proc/kallsyms} (where modules load is the guest's choice).
 */
final class GuestSymbols {
    /** A {@code /proc/kallsyms} or System.map text line: address, t/T, name, optionally [module]. */
    private static final Pattern TEXT = Pattern.compile("(?m)^([0-9a-f]{16}) [tT] (\\S+)(?:\\s+\\[(\\S+)\\])?\\s*$");

    private final NavigableMap<Long, String> symbols = new TreeMap<>(Long::compareUnsigned);

    /** The kernel's text symbols from {@code systemMap}, if it is readable; none otherwise. */
    static GuestSymbols ofKernel(Path systemMap) {
        GuestSymbols s = new GuestSymbols();
        try (Stream<String> lines = Files.lines(systemMap)) {
            lines.forEach(s::addLine);
        } catch (IOException | RuntimeException e) {
            // No map: reports name addresses without symbols.
        }
        return s;
    }

    /** The System.map beside {@code kernel} ({@code /boot/vmlinuz-R} -> {@code /boot/System.map-R}). */
    static Path systemMapOf(Path kernel) {
        return kernel.resolveSibling(kernel.getFileName().toString().replaceFirst("^vmlinuz-", "System.map-"));
    }

    /** Add the text symbols in {@code text} (lines of /proc/kallsyms or System.map); how many. */
    int add(String text) {
        Matcher m = TEXT.matcher(text);
        int n = 0;
        while (m.find()) {
            long address = Long.parseUnsignedLong(m.group(1), 16);
            if (address != 0) {
                symbols.put(address, m.group(2) + (m.group(3) == null ? "" : " [" + m.group(3) + "]"));
                n++;
            }
        }
        return n;
    }

    private void addLine(String line) {
        add(line);
    }

    /**
     * The text symbols of the kernel this JVM runs on, from its {@code /proc/kallsyms} (addresses are shown to root;
     * none otherwise). In the emulated KVM host that is the host's kernel and its modules, {@code kvm_amd} among them
     * ({@link EmulatedHostFault#hostWorldSwitch}).
     */
    static GuestSymbols ofRunningKernel() {
        return ofKernel(Path.of("/proc/kallsyms"));
    }

    /**
     * The addresses of the text symbol {@code name} of {@code module}: from its start up to the next text symbol's
     * (its end, as far as the symbols tell), if it is there.
     */
    Optional<AddressRange> extent(String name, String module) {
        String wanted = name + " [" + module + "]";
        for (Map.Entry<Long, String> e : symbols.entrySet()) {
            if (e.getValue().equals(wanted)) {
                Long next = symbols.higherKey(e.getKey());
                return next == null ? Optional.empty() : Optional.of(AddressRange.of(e.getKey(), next - e.getKey()));
            }
        }
        return Optional.empty();
    }

    /** {@code name+0xoffset [module]} for {@code address}, or {@code ?} if no symbol precedes it. */
    String describe(long address) {
        Map.Entry<Long, String> e = symbols.floorEntry(address);
        if (e == null) {
            return "?";
        }
        String name = e.getValue();
        int module = name.indexOf(" [");
        String offset = "+0x" + Long.toHexString(address - e.getKey());
        return module < 0 ? name + offset : name.substring(0, module) + offset + name.substring(module);
    }

    int size() {
        return symbols.size();
    }
}
