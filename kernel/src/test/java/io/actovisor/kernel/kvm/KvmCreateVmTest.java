package io.actovisor.kernel.kvm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.memory.sys.Errno;
import io.actovisor.memory.sys.Ioctl;
import io.actovisor.memory.sys.NativeException;
import io.actovisor.memory.sys.Posix;
import io.actovisor.memory.sys.ForwardingPosix;
import io.actovisor.memory.testing.NativeRequirement;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * KVM_CREATE_VM interrupted by a signal (the kernel answers EINTR and creates nothing; a loaded KVM-PVM host did
 * this to CI) is repeated; any other error, and an EINTR that never stops, reach the caller. Runs on the real
 * {@code /dev/kvm}: only the interrupted answers are injected.
 */
class KvmCreateVmTest {
    @BeforeEach
    void requireKvm() {
        NativeRequirement.requireKvm(Kvm.unavailabilityCause());
    }

    @Test
    void anInterruptedCreateIsRepeated() {
        InterruptingPosix posix = new InterruptingPosix(Posix.system(), 3, Errno.EINTR);
        try (Kvm kvm = Kvm.open(posix); KvmVm vm = kvm.createVm()) {
            assertEquals(4, posix.creates, "three interrupted attempts, then the one that made the VM");
            assertTrue(vm.maxMemorySlots() > 0);
        }
    }

    @Test
    void otherErrorsAndEndlessInterruptionsReachTheCaller() {
        InterruptingPosix busy = new InterruptingPosix(Posix.system(), Integer.MAX_VALUE, Errno.EINTR);
        try (Kvm kvm = Kvm.open(busy)) {
            NativeException e = assertThrows(NativeException.class, kvm::createVm);
            assertEquals(Errno.EINTR, e.errno());
            assertEquals(100, busy.creates);
        }
        InterruptingPosix full = new InterruptingPosix(Posix.system(), 1, Errno.ENOMEM);
        try (Kvm kvm = Kvm.open(full)) {
            NativeException e = assertThrows(NativeException.class, kvm::createVm);
            assertEquals(Errno.ENOMEM, e.errno());
            assertEquals(1, full.creates, "only EINTR is repeated");
        }
    }

    /** Answers the first {@code failures} KVM_CREATE_VM calls with {@code errno}, without calling the kernel. */
    private static final class InterruptingPosix extends ForwardingPosix {
        private final int failures;
        private final int errno;
        int creates;

        InterruptingPosix(Posix delegate, int failures, int errno) {
            super(delegate);
            this.failures = failures;
            this.errno = errno;
        }

        @Override
        public long ioctl(int fd, Ioctl request, long arg) {
            if (request.equals(KvmAbi.KVM_CREATE_VM) && creates++ < failures) {
                throw new NativeException("ioctl(" + request.name() + ")", errno);
            }
            return super.ioctl(fd, request, arg);
        }
    }
}
