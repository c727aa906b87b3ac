package io.actovisor.devices.dma;

/**
 * The register map of actovisor's emulated DMA engine (see docs/devices.md), shared by the device model and the
 * guest firmware's driver ({@code dma.c}). All registers are 64 bits wide at 8-byte offsets of its MMIO region.
 * The engine copies {@code LENGTH} bytes from IOVA {@code SOURCE} to IOVA {@code DESTINATION}, or checksums them
 * ({@link #checksum}), through its VFIO container's IOMMU: what it reads is what a passthrough device would see.
 */
public final class DmaEngine {
    private DmaEngine() {
    }

    /** Reads {@link #MAGIC}. */
    public static final int ID = 0x00;
    public static final int SOURCE = 0x08;
    public static final int DESTINATION = 0x10;
    public static final int LENGTH = 0x18;
    /** {@link #MODE_COPY} or {@link #MODE_CHECKSUM}. */
    public static final int MODE = 0x20;
    /** Write 1 to start. */
    public static final int DOORBELL = 0x28;
    /** {@link #STATUS_IDLE}, {@link #STATUS_BUSY}, {@link #STATUS_DONE} or {@link #STATUS_ERROR}. */
    public static final int STATUS = 0x30;
    /** The checksum of the last checksum transfer. */
    public static final int RESULT = 0x38;
    /** Why the last transfer failed: {@link #ERROR_FAULT} or {@link #ERROR_LENGTH}. */
    public static final int ERROR = 0x40;
    /** Bytes of the register block. */
    public static final int SIZE = 0x48;

    /** "ACTODMA1" little-endian. */
    public static final long MAGIC = 0x31414d444f544341L;
    public static final long MODE_COPY = 0;
    public static final long MODE_CHECKSUM = 1;
    public static final long STATUS_IDLE = 0;
    public static final long STATUS_BUSY = 1;
    public static final long STATUS_DONE = 2;
    public static final long STATUS_ERROR = 3;
    public static final long ERROR_NONE = 0;
    /** The IOMMU refused an access (no mapping, or a write to a read-only one). */
    public static final long ERROR_FAULT = 1;
    /** The length is zero, not a multiple of 8, or above {@link #MAX_LENGTH}. */
    public static final long ERROR_LENGTH = 2;
    /** The largest transfer: 16 MiB. */
    public static final long MAX_LENGTH = 16L << 20;

    /** The checksum the engine and the firmware compute: FNV-1a over little-endian 64-bit words. */
    public static long checksum(byte[] data) {
        long hash = 0xcbf29ce484222325L;
        java.nio.ByteBuffer words = java.nio.ByteBuffer.wrap(data).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        while (words.remaining() >= 8) {
            hash = (hash ^ words.getLong()) * 0x100000001b3L;
        }
        return hash;
    }
}
