package io.actovisor.devices.virtio;

/** The driver broke the virtio contract (a descriptor loop, an address outside RAM, ...): the device needs a reset. */
public final class VirtioException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public VirtioException(String message) {
        super(message);
    }
}
