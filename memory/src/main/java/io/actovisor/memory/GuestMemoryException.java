package io.actovisor.memory;

/** A guest-physical access hit no RAM (or wrote ROM): the address and length are in the message. */
public final class GuestMemoryException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    private final long address;
    private final long length;

    public GuestMemoryException(long address, long length, String why) {
        super("guest access of " + length + " bytes at GPA 0x" + Long.toHexString(address) + ": " + why);
        this.address = address;
        this.length = length;
    }

    public GuestAddress address() {
        return new GuestAddress(address);
    }

    public long length() {
        return length;
    }
}
