package io.actovisor.kernel.kvm;

/** Why {@code KVM_RUN} returned: what the guest did that the VMM must handle. */
public sealed interface VcpuExit {
    /** Port I/O: {@code in} reads need {@link KvmVcpu#completeIn} before the next run; {@code data} holds an out. */
    record Io(int port, int size, boolean in, long data) implements VcpuExit {
    }

    /** An access to guest-physical memory no slot backs: reads need {@link KvmVcpu#completeMmioRead}. */
    record Mmio(long address, int size, boolean write, long data) implements VcpuExit {
    }

    /** The guest executed HLT. */
    record Hlt(Registers registers) implements VcpuExit {
    }

    /** The guest triple-faulted or asked for a reset. */
    record Shutdown(Registers registers) implements VcpuExit {
    }

    /** KVM could not continue the guest (e.g. emulation failure); {@code suberror} says why. */
    record InternalError(int suberror, Registers registers) implements VcpuExit {
    }

    /** The hardware refused to enter the guest; {@code reason} is the hardware's code. */
    record FailEntry(long reason, Registers registers) implements VcpuExit {
    }

    /** A signal or {@code immediate_exit} ended the run before the guest exited on its own. */
    record Interrupted() implements VcpuExit {
    }

    /** An exit actovisor does not handle. */
    record Unknown(int reason, Registers registers) implements VcpuExit {
    }
}
