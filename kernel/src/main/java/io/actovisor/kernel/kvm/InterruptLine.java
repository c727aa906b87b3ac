package io.actovisor.kernel.kvm;

/**
 * One interrupt input of a VM's in-kernel interrupt controller (a GSI: I/O APIC pin, and PIC pin below 16), driven
 * by one device. It remembers its level and calls {@code KVM_IRQ_LINE} only when the level changes, so a device can
 * state its level after every register access without an ioctl each time. Thread-safe.
 */
public final class InterruptLine implements IrqLine {
    private final KvmVm vm;
    private final int gsi;
    private boolean high;
    private long raised;

    public InterruptLine(KvmVm vm, int gsi) {
        if (gsi < 0 || gsi > 23) {
            throw new IllegalArgumentException("GSI " + gsi + " is not an I/O APIC input (0-23)");
        }
        this.vm = vm;
        this.gsi = gsi;
    }

    public int gsi() {
        return gsi;
    }

    /** Drive the line to {@code level}. */
    @Override
    public synchronized void set(boolean level) {
        if (level != high) {
            vm.setIrqLine(gsi, level);
            high = level;
            if (level) {
                raised++;
            }
        }
    }

    /** How often the line went high. */
    public synchronized long raised() {
        return raised;
    }
}
