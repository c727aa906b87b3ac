package io.actovisor.kernel.kvm;

/**
 * An interrupt line a device can be given before the VM's interrupt controller exists: it remembers the level
 * until {@link #connect} attaches the real line (then drives it to that level), and forwards to it afterwards.
 * The VM builder gives one to a device's factory; the VM connects it once KVM's irqchip is created.
 */
public final class DeferredIrqLine implements IrqLine {
    private IrqLine target;
    private boolean high;

    @Override
    public synchronized void set(boolean level) {
        high = level;
        if (target != null) {
            target.set(level);
        }
    }

    /** Attach the real line; at most once. */
    public synchronized void connect(IrqLine line) {
        if (target != null) {
            throw new IllegalStateException("this interrupt line is already connected");
        }
        target = line;
        line.set(high);
    }

    /** Whether {@link #connect} ran. */
    public synchronized boolean connected() {
        return target != null;
    }
}
