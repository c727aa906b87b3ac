package io.actovisor.kernel.kvm;

/** An interrupt line a device drives: high while the device wants attention. */
public interface IrqLine {
    /** Drive the line to {@code high}. */
    void set(boolean high);
}
