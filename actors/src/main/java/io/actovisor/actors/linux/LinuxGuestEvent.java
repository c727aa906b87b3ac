package io.actovisor.actors.linux;

import java.util.List;

/** What a Linux guest's devices publish on the event stream, in the past tense. */
public sealed interface LinuxGuestEvent {
    /** The guest wrote {@code text} (bytes as ISO-8859-1 characters) to its console; published in chunks. */
    record ConsoleOutput(String device, String text) implements LinuxGuestEvent {
    }

    /** The guest's kernel panicked; {@code lastLines} are the console's last lines, the panic among them. */
    record Panicked(String vm, List<String> lastLines) implements LinuxGuestEvent {
        public Panicked {
            lastLines = List.copyOf(lastLines);
        }
    }

    /** The guest pulsed the reset line (i8042 command 0xfe): it rebooted, and the VM stops. */
    record ResetRequested(String vm) implements LinuxGuestEvent {
    }
}
