package io.actovisor.kernel.kvm;

import io.actovisor.memory.sys.Errno;
import io.actovisor.memory.sys.NativeBuffer;
import io.actovisor.memory.sys.NativeException;
import io.actovisor.memory.sys.Posix;
import java.util.Optional;

/**
 * The KVM system: one open {@code /dev/kvm}. Owns that fd ({@link #close()} is idempotent); VMs created from it
 * own their own fds and outlive it.
 */
public final class Kvm implements AutoCloseable {
    /** Where the KVM device lives. */
    public static final String DEVICE = "/dev/kvm";
    private static final int MAX_CPUID_ENTRIES = 256;
    private static final int CREATE_VM_ATTEMPTS = 100;
    private static final Optional<String> UNAVAILABILITY = probe();

    private final Posix posix;
    private final int fd;
    private boolean closed;

    private Kvm(Posix posix, int fd) {
        this.posix = posix;
        this.fd = fd;
    }

    /** Open {@code /dev/kvm} and check the API version is {@value KvmAbi#KVM_API_VERSION}. */
    public static Kvm open() {
        return open(Posix.system());
    }

    public static Kvm open(Posix posix) {
        int fd = posix.open(DEVICE, Posix.O_RDWR | Posix.O_CLOEXEC);
        Kvm kvm = new Kvm(posix, fd);
        try {
            int version = kvm.apiVersion();
            if (version != KvmAbi.KVM_API_VERSION) {
                throw new KvmException(DEVICE + " speaks KVM API version " + version + ", actovisor needs "
                        + KvmAbi.KVM_API_VERSION);
            }
            return kvm;
        } catch (RuntimeException e) {
            kvm.close();
            throw e;
        }
    }

    /** Whether KVM can be used here: /dev/kvm opens, speaks API 12 and has the capabilities actovisor needs. */
    public static boolean isAvailable() {
        return UNAVAILABILITY.isEmpty();
    }

    /** Why KVM cannot be used here, if it cannot. */
    public static Optional<String> unavailabilityCause() {
        return UNAVAILABILITY;
    }

    private static Optional<String> probe() {
        if (!Posix.isAvailable()) {
            return Posix.unavailabilityCause();
        }
        try (Kvm kvm = open()) {
            int[] needed = {KvmAbi.KVM_CAP_USER_MEMORY, KvmAbi.KVM_CAP_SET_TSS_ADDR, KvmAbi.KVM_CAP_EXT_CPUID,
                    KvmAbi.KVM_CAP_IMMEDIATE_EXIT, KvmAbi.KVM_CAP_READONLY_MEM};
            for (int cap : needed) {
                if (kvm.checkExtension(cap) <= 0) {
                    return Optional.of(DEVICE + " lacks capability " + cap + " (see KvmAbi KVM_CAP_*)");
                }
            }
            return Optional.empty();
        } catch (RuntimeException e) {
            return Optional.of("cannot use " + DEVICE + ": " + e.getMessage());
        }
    }

    private int fd() {
        if (closed) {
            throw new IllegalStateException(DEVICE + " handle is closed");
        }
        return fd;
    }

    /**
     * Whether this host's KVM is KVM-PVM ({@code /sys/module/kvm_pvm}), which runs guest kernels that are not
     * built for PVM through shadow paging and KVM's instruction emulator: slowly, and instructions the emulator
     * lacks (CMPXCHG16B, XRSTOR, ...) stop the vCPU with KVM_INTERNAL_ERROR_EMULATION.
     */
    public static boolean emulatesGuestKernels() {
        return java.nio.file.Files.isDirectory(java.nio.file.Path.of("/sys/module/kvm_pvm"));
    }

    /** KVM_GET_API_VERSION. */
    public int apiVersion() {
        return (int) posix.ioctl(fd(), KvmAbi.KVM_GET_API_VERSION, 0);
    }

    /** KVM_CHECK_EXTENSION: 0 when absent, otherwise a capability-specific positive value. */
    public int checkExtension(int capability) {
        return (int) posix.ioctl(fd(), KvmAbi.KVM_CHECK_EXTENSION, capability);
    }

    /** KVM_GET_VCPU_MMAP_SIZE: bytes to map from each vCPU fd (kvm_run plus pages that follow it). */
    public long vcpuMmapSize() {
        return posix.ioctl(fd(), KvmAbi.KVM_GET_VCPU_MMAP_SIZE, 0);
    }

    /** How many memory slots a VM may have (KVM_CAP_NR_MEMSLOTS). */
    public int maxMemorySlots() {
        return checkExtension(KvmAbi.KVM_CAP_NR_MEMSLOTS);
    }

    /** KVM_GET_SUPPORTED_CPUID: the CPUID leaves this host lets a guest see. */
    public CpuidEntries supportedCpuid() {
        int size = KvmAbi.KVM_CPUID2_SIZE + MAX_CPUID_ENTRIES * KvmAbi.KVM_CPUID_ENTRY2_SIZE;
        try (NativeBuffer buf = NativeBuffer.allocate(size)) {
            buf.putInt(KvmAbi.CPUID2_NENT, MAX_CPUID_ENTRIES);
            posix.ioctl(fd(), KvmAbi.KVM_GET_SUPPORTED_CPUID, buf.address());
            int count = buf.getInt(KvmAbi.CPUID2_NENT);
            return new CpuidEntries(buf.getBytes(KvmAbi.CPUID2_ENTRIES, count * KvmAbi.KVM_CPUID_ENTRY2_SIZE));
        } catch (NativeException e) {
            throw new KvmException("cannot read the supported CPUID leaves: " + e.getMessage(), e);
        }
    }

    /**
     * KVM_CREATE_VM: a new, empty VM owned by the returned object. The kernel may answer EINTR when a signal arrives
     * while it sets the VM up (seen on a loaded KVM-PVM host); nothing was created then, and the call is repeated, as
     * QEMU's {@code kvm_init} does.
     */
    public KvmVm createVm() {
        int vmFd = -1;
        for (int attempt = 1; vmFd < 0; attempt++) {
            try {
                vmFd = (int) posix.ioctl(fd(), KvmAbi.KVM_CREATE_VM, 0);
            } catch (NativeException e) {
                if (e.errno() != Errno.EINTR || attempt == CREATE_VM_ATTEMPTS) {
                    throw e;
                }
            }
        }
        return new KvmVm(posix, vmFd, vcpuMmapSize(), maxMemorySlots());
    }

    /** Close {@code /dev/kvm}. Idempotent. */
    @Override
    public void close() {
        if (!closed) {
            closed = true;
            posix.close(fd);
        }
    }
}
