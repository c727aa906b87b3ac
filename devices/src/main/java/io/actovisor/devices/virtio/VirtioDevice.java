package io.actovisor.devices.virtio;

/** The device side of a virtio device behind {@link VirtioMmio}: identity, features, queues and config space. */
public interface VirtioDevice {
    /** The virtio device ID (5 for the balloon). */
    int deviceId();

    /** Feature bits the device offers; {@link VirtioMmio#F_VERSION_1} is added by the transport. */
    long features();

    /** How many queues, and the largest size of each. */
    int[] queueMaxSizes();

    /** A read of {@code size} bytes of config space at {@code offset}. */
    long readConfig(int offset, int size);

    /** A write to config space; devices ignore writes to read-only fields. */
    void writeConfig(int offset, int size, long value);

    /** The driver reset the device: forget everything negotiated. */
    void reset();
}
