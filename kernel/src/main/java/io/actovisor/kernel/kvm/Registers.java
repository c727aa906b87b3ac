package io.actovisor.kernel.kvm;

import java.util.Arrays;

/** A vCPU's general-purpose registers ({@code struct kvm_regs}: rax..r15, rip, rflags), for reports and set-up. */
public record Registers(long[] values) {
    /** Names in {@code struct kvm_regs} order. */
    public static final String[] NAMES = {"rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp", "r8", "r9",
        "r10", "r11", "r12", "r13", "r14", "r15", "rip", "rflags"};

    public Registers {
        if (values.length != NAMES.length) {
            throw new IllegalArgumentException("kvm_regs holds " + NAMES.length + " registers, got " + values.length);
        }
        values = values.clone();
    }

    /** A copy, in {@link #NAMES} order: the record stays as read. */
    @Override
    public long[] values() {
        return values.clone();
    }

    public long rip() {
        return values[16];
    }

    public long rsp() {
        return values[6];
    }

    public long rax() {
        return values[0];
    }

    @Override
    public String toString() {
        StringBuilder out = new StringBuilder();
        for (int i = 0; i < NAMES.length; i++) {
            out.append(i == 0 ? "" : " ").append(NAMES[i]).append("=0x").append(Long.toHexString(values[i]));
        }
        return out.toString();
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof Registers r && Arrays.equals(r.values, values);
    }

    @Override
    public int hashCode() {
        return Arrays.hashCode(values);
    }
}
