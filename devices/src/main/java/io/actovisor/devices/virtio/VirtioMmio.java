package io.actovisor.devices.virtio;

import io.actovisor.memory.GuestMemory;
import io.actovisor.memory.GuestMemoryView;
import java.util.Optional;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The virtio-mmio transport, version 2 (virtio 1.x): the register file a driver programs to find, negotiate with
 * and set up a {@link VirtioDevice}. Interrupts are <b>polled</b>: actovisor's VMs have no in-kernel irqchip yet,
 * so the driver reads {@code InterruptStatus} (and its used rings) instead of taking an interrupt; an irqfd would
 * plug in where {@link #raise} sets the status bits. A driver that breaks the contract puts the device in
 * {@code DEVICE_NEEDS_RESET} with a logged reason; nothing the guest writes throws out of this class.
 */
public final class VirtioMmio {
    public static final int MAGIC_VALUE = 0x000;
    public static final int VERSION = 0x004;
    public static final int DEVICE_ID = 0x008;
    public static final int VENDOR_ID = 0x00c;
    public static final int DEVICE_FEATURES = 0x010;
    public static final int DEVICE_FEATURES_SEL = 0x014;
    public static final int DRIVER_FEATURES = 0x020;
    public static final int DRIVER_FEATURES_SEL = 0x024;
    public static final int QUEUE_SEL = 0x030;
    public static final int QUEUE_NUM_MAX = 0x034;
    public static final int QUEUE_NUM = 0x038;
    public static final int QUEUE_READY = 0x044;
    public static final int QUEUE_NOTIFY = 0x050;
    public static final int INTERRUPT_STATUS = 0x060;
    public static final int INTERRUPT_ACK = 0x064;
    public static final int STATUS = 0x070;
    public static final int QUEUE_DESC_LOW = 0x080;
    public static final int QUEUE_DESC_HIGH = 0x084;
    public static final int QUEUE_DRIVER_LOW = 0x090;
    public static final int QUEUE_DRIVER_HIGH = 0x094;
    public static final int QUEUE_DEVICE_LOW = 0x0a0;
    public static final int QUEUE_DEVICE_HIGH = 0x0a4;
    public static final int CONFIG_GENERATION = 0x0fc;
    public static final int CONFIG = 0x100;
    /** Bytes of the register window. */
    public static final int SIZE = 0x200;

    /** "virt", little-endian. */
    public static final int MAGIC = 0x74726976;
    /** actovisor's vendor ID ("ACTV"). */
    public static final int VENDOR = 0x56544341;
    public static final long F_VERSION_1 = 1L << 32;

    public static final int S_ACKNOWLEDGE = 1;
    public static final int S_DRIVER = 2;
    public static final int S_DRIVER_OK = 4;
    public static final int S_FEATURES_OK = 8;
    public static final int S_DEVICE_NEEDS_RESET = 64;
    public static final int S_FAILED = 128;

    /** InterruptStatus bit: a used ring changed. */
    public static final int INT_USED_BUFFER = 1;
    /** InterruptStatus bit: the config space changed. */
    public static final int INT_CONFIG_CHANGE = 2;

    private static final Logger LOG = LoggerFactory.getLogger(VirtioMmio.class);

    private final String name;
    private final VirtioDevice device;
    private final GuestMemoryView memory;
    private final int[] maxSizes;
    private final Queue[] queues;
    private int status;
    private int deviceFeaturesSel;
    private int driverFeaturesSel;
    private long driverFeatures;
    private int queueSel;
    private int interruptStatus;
    private int configGeneration;
    private long failures;
    private String lastFailure = "";

    /** The driver's setup of one queue, live once ready. */
    private static final class Queue {
        int num;
        long desc;
        long driver;
        long device;
        Virtqueue live;
    }

    /** A transport over memory that never changes (tests, a fixed memory map). */
    public VirtioMmio(String name, VirtioDevice device, GuestMemory memory) {
        this(name, device, GuestMemoryView.of(memory));
    }

    /** A transport whose queues live in {@code memory} as it is at each access (RAM added later included). */
    public VirtioMmio(String name, VirtioDevice device, GuestMemoryView memory) {
        this.name = name;
        this.device = device;
        this.memory = memory;
        this.maxSizes = device.queueMaxSizes().clone();
        this.queues = new Queue[maxSizes.length];
        resetState();
    }

    private void resetState() {
        for (int i = 0; i < queues.length; i++) {
            queues[i] = new Queue();
            queues[i].num = maxSizes[i];
        }
        status = 0;
        deviceFeaturesSel = 0;
        driverFeaturesSel = 0;
        driverFeatures = 0;
        queueSel = 0;
        interruptStatus = 0;
    }

    private long offered() {
        return device.features() | F_VERSION_1;
    }

    /** A 32-bit register read, or a config-space read of {@code size} bytes. */
    public long read(int offset, int size) {
        if (offset >= CONFIG) {
            return device.readConfig(offset - CONFIG, size);
        }
        return switch (offset) {
            case MAGIC_VALUE -> MAGIC;
            case VERSION -> 2;
            case DEVICE_ID -> device.deviceId();
            case VENDOR_ID -> VENDOR;
            case DEVICE_FEATURES -> deviceFeaturesSel > 1 ? 0 : (offered() >>> (32 * deviceFeaturesSel)) & 0xffffffffL;
            case QUEUE_NUM_MAX -> queueSel < queues.length ? maxSizes[queueSel] : 0;
            case QUEUE_READY -> queueSel < queues.length && queues[queueSel].live != null ? 1 : 0;
            case INTERRUPT_STATUS -> interruptStatus;
            case STATUS -> status;
            case CONFIG_GENERATION -> configGeneration;
            default -> 0;
        };
    }

    /**
     * A 32-bit register write, or a config-space write. Returns the queue the driver notified, if this write was a
     * {@code QueueNotify} for a live queue: the caller then processes that queue.
     */
    public Optional<Integer> write(int offset, int size, long value) {
        int v = (int) value;
        if (offset >= CONFIG) {
            device.writeConfig(offset - CONFIG, size, value);
            return Optional.empty();
        }
        switch (offset) {
            case DEVICE_FEATURES_SEL -> deviceFeaturesSel = v;
            case DRIVER_FEATURES_SEL -> driverFeaturesSel = v;
            case DRIVER_FEATURES -> {
                if (driverFeaturesSel <= 1 && (status & S_FEATURES_OK) == 0) {
                    long shift = 32L * driverFeaturesSel;
                    driverFeatures = (driverFeatures & ~(0xffffffffL << shift)) | ((value & 0xffffffffL) << shift);
                }
            }
            case QUEUE_SEL -> queueSel = v;
            case QUEUE_NUM -> withQueue(q -> q.num = v);
            case QUEUE_DESC_LOW -> withQueue(q -> q.desc = low(q.desc, value));
            case QUEUE_DESC_HIGH -> withQueue(q -> q.desc = high(q.desc, value));
            case QUEUE_DRIVER_LOW -> withQueue(q -> q.driver = low(q.driver, value));
            case QUEUE_DRIVER_HIGH -> withQueue(q -> q.driver = high(q.driver, value));
            case QUEUE_DEVICE_LOW -> withQueue(q -> q.device = low(q.device, value));
            case QUEUE_DEVICE_HIGH -> withQueue(q -> q.device = high(q.device, value));
            case QUEUE_READY -> {
                if (v == 1) {
                    activateQueue();
                } else {
                    withQueue(q -> q.live = null);
                }
            }
            case QUEUE_NOTIFY -> {
                // A notify between FEATURES_OK and DRIVER_OK on a ready queue is served, as QEMU serves it: Linux's
                // virtio_balloon kicks its statistics queue before it sets DRIVER_OK. Before FEATURES_OK there is no
                // queue to serve.
                if ((status & S_DRIVER_OK) == 0 && (status & S_FEATURES_OK) == 0) {
                    fail("the driver notified queue " + v + " before DRIVER_OK (and before FEATURES_OK)");
                } else if (v < 0 || v >= queues.length || queues[v].live == null) {
                    fail("the driver notified queue " + v + ", which is not ready");
                } else if ((status & S_DEVICE_NEEDS_RESET) == 0) {
                    return Optional.of(v);
                }
            }
            case INTERRUPT_ACK -> interruptStatus &= ~v;
            case STATUS -> writeStatus(v);
            default -> {
                // Read-only or unknown registers: writes are ignored, as the specification allows.
            }
        }
        return Optional.empty();
    }

    private void writeStatus(int v) {
        if (v == 0) {
            device.reset();
            resetState();
            return;
        }
        if ((v & S_FEATURES_OK) != 0 && (status & S_FEATURES_OK) == 0) {
            if ((driverFeatures & ~offered()) != 0) {
                status = v & ~S_FEATURES_OK;
                fail("the driver accepted features 0x" + Long.toHexString(driverFeatures & ~offered())
                        + " the device did not offer");
                return;
            }
            if ((driverFeatures & F_VERSION_1) == 0) {
                status = v & ~S_FEATURES_OK;
                fail("the driver did not accept VIRTIO_F_VERSION_1 (legacy drivers are not supported)");
                return;
            }
        }
        status = v | (status & S_DEVICE_NEEDS_RESET);
    }

    private void activateQueue() {
        if (queueSel < 0 || queueSel >= queues.length) {
            fail("queue " + queueSel + " does not exist");
            return;
        }
        Queue q = queues[queueSel];
        try {
            if (q.num > maxSizes[queueSel]) {
                throw new VirtioException("queue " + queueSel + ": size " + q.num + " exceeds the maximum "
                        + maxSizes[queueSel]);
            }
            Virtqueue live = new Virtqueue(queueSel, q.num, q.desc, q.driver, q.device);
            live.checkRings(memory.current());
            q.live = live;
        } catch (VirtioException e) {
            fail(e.getMessage());
        }
    }

    private void withQueue(java.util.function.Consumer<Queue> change) {
        if (queueSel >= 0 && queueSel < queues.length && queues[queueSel].live == null) {
            change.accept(queues[queueSel]);
        }
    }

    private static long low(long old, long value) {
        return (old & 0xffffffff00000000L) | (value & 0xffffffffL);
    }

    private static long high(long old, long value) {
        return (old & 0xffffffffL) | (value << 32);
    }

    /** The live queue {@code index}, for the device's processing. */
    public Optional<Virtqueue> queue(int index) {
        return index < queues.length ? Optional.ofNullable(queues[index].live) : Optional.empty();
    }

    /** Guest memory as of now: take it once per request and use that snapshot for the whole request. */
    public GuestMemory memory() {
        return memory.current();
    }

    /** Whether the driver finished setup (DRIVER_OK) and the device is not waiting for a reset. */
    public boolean live() {
        return (status & S_DRIVER_OK) != 0 && (status & S_DEVICE_NEEDS_RESET) == 0;
    }

    public long negotiatedFeatures() {
        return driverFeatures;
    }

    /** Set interrupt status bits (the driver polls them). */
    public void raise(int bits) {
        interruptStatus |= bits;
    }

    /** The device's config space changed: bump the generation and tell the driver. */
    public void configChanged() {
        configGeneration++;
        raise(INT_CONFIG_CHANGE);
    }

    /** Put the device in DEVICE_NEEDS_RESET because the driver broke the contract. */
    public void fail(String reason) {
        failures++;
        lastFailure = reason;
        status |= S_DEVICE_NEEDS_RESET;
        raise(INT_CONFIG_CHANGE);
        LOG.warn("virtio device {} needs a reset: {}", name, reason);
    }

    public int status() {
        return status;
    }

    /** How many times the driver broke the contract, and the last reason. */
    public long failures() {
        return failures;
    }

    public String lastFailure() {
        return lastFailure;
    }
}
