package io.actovisor.config;

/**
 * Which guest a VM runs: {@code auto} (the firmware guest where /dev/kvm works, else the scripted guest),
 * {@code firmware} (the bundled or a file firmware on KVM), {@code scripted} (a Java driver-side guest, no KVM),
 * {@code linux} (a Linux kernel on KVM).
 */
public enum GuestKind {
    AUTO, FIRMWARE, SCRIPTED, LINUX;

    /** The HOCON spelling of this kind. */
    public String configName() {
        return name().toLowerCase(java.util.Locale.ROOT);
    }
}
