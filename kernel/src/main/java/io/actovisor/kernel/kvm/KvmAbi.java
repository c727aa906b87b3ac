package io.actovisor.kernel.kvm;

import io.actovisor.memory.sys.Ioctl;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Every number of the KVM ABI that actovisor uses: ioctl requests, capability and exit codes, structure sizes and
 * field offsets. Each is declared once, together with the C expression that names it in
 * {@code <linux/kvm.h>}; {@code KvmAbiTest} compiles all those expressions with gcc and compares the results, so
 * a constant that is not declared through {@link #c} cannot be used without being checked.
 */
public final class KvmAbi {
    private static final Map<String, Long> EXPRESSIONS = new LinkedHashMap<>();
    private static final int KVMIO = 0xAE;

    private KvmAbi() {
    }

    private static int c(String expression, int value) {
        EXPRESSIONS.put(expression, (long) value);
        return value;
    }

    private static Ioctl ioctl(Ioctl request) {
        EXPRESSIONS.put(request.name(), request.number());
        return request;
    }

    /** The C expression of each constant and the value Java uses for it. */
    public static Map<String, Long> expressions() {
        return Collections.unmodifiableMap(EXPRESSIONS);
    }

    // Structure sizes (declared first: the ioctl numbers below encode some of them).
    public static final int KVM_REGS_SIZE = c("sizeof(struct kvm_regs)", 144);
    public static final int KVM_SREGS_SIZE = c("sizeof(struct kvm_sregs)", 312);
    public static final int KVM_SEGMENT_SIZE = c("sizeof(struct kvm_segment)", 24);
    public static final int KVM_DTABLE_SIZE = c("sizeof(struct kvm_dtable)", 16);
    public static final int KVM_USERSPACE_MEMORY_REGION_SIZE = c("sizeof(struct kvm_userspace_memory_region)", 32);
    public static final int KVM_CPUID2_SIZE = c("sizeof(struct kvm_cpuid2)", 8);
    public static final int KVM_CPUID_ENTRY2_SIZE = c("sizeof(struct kvm_cpuid_entry2)", 40);
    public static final int KVM_RUN_SIZE = c("sizeof(struct kvm_run)", 2352);

    // System ioctls on /dev/kvm.
    public static final int KVM_API_VERSION = c("KVM_API_VERSION", 12);
    public static final Ioctl KVM_GET_API_VERSION = ioctl(Ioctl.io("KVM_GET_API_VERSION", KVMIO, 0x00));
    public static final Ioctl KVM_CREATE_VM = ioctl(Ioctl.io("KVM_CREATE_VM", KVMIO, 0x01));
    public static final Ioctl KVM_CHECK_EXTENSION = ioctl(Ioctl.io("KVM_CHECK_EXTENSION", KVMIO, 0x03));
    public static final Ioctl KVM_GET_VCPU_MMAP_SIZE = ioctl(Ioctl.io("KVM_GET_VCPU_MMAP_SIZE", KVMIO, 0x04));
    public static final Ioctl KVM_GET_SUPPORTED_CPUID =
            ioctl(Ioctl.iowr("KVM_GET_SUPPORTED_CPUID", KVMIO, 0x05, KVM_CPUID2_SIZE));

    // VM ioctls.
    public static final Ioctl KVM_CREATE_VCPU = ioctl(Ioctl.io("KVM_CREATE_VCPU", KVMIO, 0x41));
    public static final Ioctl KVM_SET_USER_MEMORY_REGION = ioctl(Ioctl.iow("KVM_SET_USER_MEMORY_REGION", KVMIO,
            0x46, KVM_USERSPACE_MEMORY_REGION_SIZE));
    public static final Ioctl KVM_SET_TSS_ADDR = ioctl(Ioctl.io("KVM_SET_TSS_ADDR", KVMIO, 0x47));
    public static final Ioctl KVM_SET_IDENTITY_MAP_ADDR = ioctl(Ioctl.iow("KVM_SET_IDENTITY_MAP_ADDR", KVMIO,
            0x48, 8));

    // vCPU ioctls.
    public static final Ioctl KVM_RUN = ioctl(Ioctl.io("KVM_RUN", KVMIO, 0x80));
    public static final Ioctl KVM_GET_REGS = ioctl(Ioctl.ior("KVM_GET_REGS", KVMIO, 0x81, KVM_REGS_SIZE));
    public static final Ioctl KVM_SET_REGS = ioctl(Ioctl.iow("KVM_SET_REGS", KVMIO, 0x82, KVM_REGS_SIZE));
    public static final Ioctl KVM_GET_SREGS = ioctl(Ioctl.ior("KVM_GET_SREGS", KVMIO, 0x83, KVM_SREGS_SIZE));
    public static final Ioctl KVM_SET_SREGS = ioctl(Ioctl.iow("KVM_SET_SREGS", KVMIO, 0x84, KVM_SREGS_SIZE));
    public static final Ioctl KVM_SET_CPUID2 = ioctl(Ioctl.iow("KVM_SET_CPUID2", KVMIO, 0x90, KVM_CPUID2_SIZE));

    // Capabilities.
    public static final int KVM_CAP_USER_MEMORY = c("KVM_CAP_USER_MEMORY", 3);
    public static final int KVM_CAP_SET_TSS_ADDR = c("KVM_CAP_SET_TSS_ADDR", 4);
    public static final int KVM_CAP_EXT_CPUID = c("KVM_CAP_EXT_CPUID", 7);
    public static final int KVM_CAP_NR_MEMSLOTS = c("KVM_CAP_NR_MEMSLOTS", 10);
    public static final int KVM_CAP_SET_IDENTITY_MAP_ADDR = c("KVM_CAP_SET_IDENTITY_MAP_ADDR", 37);
    public static final int KVM_CAP_READONLY_MEM = c("KVM_CAP_READONLY_MEM", 81);
    public static final int KVM_CAP_IMMEDIATE_EXIT = c("KVM_CAP_IMMEDIATE_EXIT", 136);

    public static final int KVM_MEM_READONLY = c("KVM_MEM_READONLY", 2);

    // Exit reasons.
    public static final int KVM_EXIT_UNKNOWN = c("KVM_EXIT_UNKNOWN", 0);
    public static final int KVM_EXIT_EXCEPTION = c("KVM_EXIT_EXCEPTION", 1);
    public static final int KVM_EXIT_IO = c("KVM_EXIT_IO", 2);
    public static final int KVM_EXIT_HLT = c("KVM_EXIT_HLT", 5);
    public static final int KVM_EXIT_MMIO = c("KVM_EXIT_MMIO", 6);
    public static final int KVM_EXIT_SHUTDOWN = c("KVM_EXIT_SHUTDOWN", 8);
    public static final int KVM_EXIT_FAIL_ENTRY = c("KVM_EXIT_FAIL_ENTRY", 9);
    public static final int KVM_EXIT_INTR = c("KVM_EXIT_INTR", 10);
    public static final int KVM_EXIT_INTERNAL_ERROR = c("KVM_EXIT_INTERNAL_ERROR", 17);
    public static final int KVM_EXIT_IO_IN = c("KVM_EXIT_IO_IN", 0);
    public static final int KVM_EXIT_IO_OUT = c("KVM_EXIT_IO_OUT", 1);

    // struct kvm_run.
    public static final int RUN_IMMEDIATE_EXIT = c("offsetof(struct kvm_run, immediate_exit)", 1);
    public static final int RUN_EXIT_REASON = c("offsetof(struct kvm_run, exit_reason)", 8);
    public static final int RUN_IO_DIRECTION = c("offsetof(struct kvm_run, io.direction)", 32);
    public static final int RUN_IO_SIZE = c("offsetof(struct kvm_run, io.size)", 33);
    public static final int RUN_IO_PORT = c("offsetof(struct kvm_run, io.port)", 34);
    public static final int RUN_IO_COUNT = c("offsetof(struct kvm_run, io.count)", 36);
    public static final int RUN_IO_DATA_OFFSET = c("offsetof(struct kvm_run, io.data_offset)", 40);
    public static final int RUN_MMIO_PHYS_ADDR = c("offsetof(struct kvm_run, mmio.phys_addr)", 32);
    public static final int RUN_MMIO_DATA = c("offsetof(struct kvm_run, mmio.data)", 40);
    public static final int RUN_MMIO_LEN = c("offsetof(struct kvm_run, mmio.len)", 48);
    public static final int RUN_MMIO_IS_WRITE = c("offsetof(struct kvm_run, mmio.is_write)", 52);
    public static final int RUN_FAIL_ENTRY_REASON =
            c("offsetof(struct kvm_run, fail_entry.hardware_entry_failure_reason)", 32);
    public static final int RUN_FAIL_ENTRY_CPU = c("offsetof(struct kvm_run, fail_entry.cpu)", 40);
    public static final int RUN_INTERNAL_SUBERROR = c("offsetof(struct kvm_run, internal.suberror)", 32);
    public static final int RUN_INTERNAL_NDATA = c("offsetof(struct kvm_run, internal.ndata)", 36);
    public static final int RUN_INTERNAL_DATA = c("offsetof(struct kvm_run, internal.data)", 40);
    public static final int RUN_EX_EXCEPTION = c("offsetof(struct kvm_run, ex.exception)", 32);
    public static final int RUN_EX_ERROR_CODE = c("offsetof(struct kvm_run, ex.error_code)", 36);

    // struct kvm_userspace_memory_region.
    public static final int MEMREG_SLOT = c("offsetof(struct kvm_userspace_memory_region, slot)", 0);
    public static final int MEMREG_FLAGS = c("offsetof(struct kvm_userspace_memory_region, flags)", 4);
    public static final int MEMREG_GUEST_PHYS_ADDR =
            c("offsetof(struct kvm_userspace_memory_region, guest_phys_addr)", 8);
    public static final int MEMREG_MEMORY_SIZE = c("offsetof(struct kvm_userspace_memory_region, memory_size)", 16);
    public static final int MEMREG_USERSPACE_ADDR =
            c("offsetof(struct kvm_userspace_memory_region, userspace_addr)", 24);

    // struct kvm_cpuid2 and kvm_cpuid_entry2.
    public static final int CPUID2_NENT = c("offsetof(struct kvm_cpuid2, nent)", 0);
    public static final int CPUID2_ENTRIES = c("offsetof(struct kvm_cpuid2, entries)", 8);
    public static final int CPUID_ENTRY_EAX = c("offsetof(struct kvm_cpuid_entry2, eax)", 12);
    public static final int CPUID_ENTRY_EBX = c("offsetof(struct kvm_cpuid_entry2, ebx)", 16);
    public static final int CPUID_ENTRY_INDEX = c("offsetof(struct kvm_cpuid_entry2, index)", 4);
    public static final int CPUID_ENTRY_ECX = c("offsetof(struct kvm_cpuid_entry2, ecx)", 20);
    public static final int CPUID_ENTRY_EDX = c("offsetof(struct kvm_cpuid_entry2, edx)", 24);

    // Model-specific registers.
    public static final int KVM_MSRS_SIZE = c("sizeof(struct kvm_msrs)", 8);
    public static final int KVM_MSR_ENTRY_SIZE = c("sizeof(struct kvm_msr_entry)", 16);
    public static final Ioctl KVM_SET_MSRS = ioctl(Ioctl.iow("KVM_SET_MSRS", KVMIO, 0x89, KVM_MSRS_SIZE));
    public static final int MSRS_NMSRS = c("offsetof(struct kvm_msrs, nmsrs)", 0);
    public static final int MSRS_ENTRIES = c("offsetof(struct kvm_msrs, entries)", 8);
    public static final int MSR_ENTRY_INDEX = c("offsetof(struct kvm_msr_entry, index)", 0);
    public static final int MSR_ENTRY_DATA = c("offsetof(struct kvm_msr_entry, data)", 8);

    // The in-kernel interrupt controllers (PIC, I/O APIC, local APICs) and PIT.
    public static final int KVM_IRQ_LEVEL_SIZE = c("sizeof(struct kvm_irq_level)", 8);
    public static final int KVM_PIT_CONFIG_SIZE = c("sizeof(struct kvm_pit_config)", 64);
    public static final Ioctl KVM_CREATE_IRQCHIP = ioctl(Ioctl.io("KVM_CREATE_IRQCHIP", KVMIO, 0x60));
    public static final Ioctl KVM_IRQ_LINE = ioctl(Ioctl.iow("KVM_IRQ_LINE", KVMIO, 0x61, KVM_IRQ_LEVEL_SIZE));
    public static final Ioctl KVM_CREATE_PIT2 = ioctl(Ioctl.iow("KVM_CREATE_PIT2", KVMIO, 0x77,
            KVM_PIT_CONFIG_SIZE));
    public static final int KVM_CAP_IRQCHIP = c("KVM_CAP_IRQCHIP", 0);
    public static final int KVM_CAP_PIT2 = c("KVM_CAP_PIT2", 33);
    public static final int KVM_PIT_SPEAKER_DUMMY = c("KVM_PIT_SPEAKER_DUMMY", 1);
    public static final int IRQ_LEVEL_IRQ = c("offsetof(struct kvm_irq_level, irq)", 0);
    public static final int IRQ_LEVEL_LEVEL = c("offsetof(struct kvm_irq_level, level)", 4);
    public static final int PIT_CONFIG_FLAGS = c("offsetof(struct kvm_pit_config, flags)", 0);

    // struct kvm_regs: 18 consecutive u64 in this order.
    public static final int REGS_RAX = c("offsetof(struct kvm_regs, rax)", 0);
    public static final int REGS_RBX = c("offsetof(struct kvm_regs, rbx)", 8);
    public static final int REGS_RCX = c("offsetof(struct kvm_regs, rcx)", 16);
    public static final int REGS_RDX = c("offsetof(struct kvm_regs, rdx)", 24);
    public static final int REGS_RSI = c("offsetof(struct kvm_regs, rsi)", 32);
    public static final int REGS_RDI = c("offsetof(struct kvm_regs, rdi)", 40);
    public static final int REGS_RSP = c("offsetof(struct kvm_regs, rsp)", 48);
    public static final int REGS_RBP = c("offsetof(struct kvm_regs, rbp)", 56);
    public static final int REGS_R8 = c("offsetof(struct kvm_regs, r8)", 64);
    public static final int REGS_R15 = c("offsetof(struct kvm_regs, r15)", 120);
    public static final int REGS_RIP = c("offsetof(struct kvm_regs, rip)", 128);
    public static final int REGS_RFLAGS = c("offsetof(struct kvm_regs, rflags)", 136);

    // struct kvm_sregs.
    public static final int SREGS_CS = c("offsetof(struct kvm_sregs, cs)", 0);
    public static final int SREGS_DS = c("offsetof(struct kvm_sregs, ds)", 24);
    public static final int SREGS_ES = c("offsetof(struct kvm_sregs, es)", 48);
    public static final int SREGS_FS = c("offsetof(struct kvm_sregs, fs)", 72);
    public static final int SREGS_GS = c("offsetof(struct kvm_sregs, gs)", 96);
    public static final int SREGS_SS = c("offsetof(struct kvm_sregs, ss)", 120);
    public static final int SREGS_TR = c("offsetof(struct kvm_sregs, tr)", 144);
    public static final int SREGS_LDT = c("offsetof(struct kvm_sregs, ldt)", 168);
    public static final int SREGS_GDT = c("offsetof(struct kvm_sregs, gdt)", 192);
    public static final int SREGS_IDT = c("offsetof(struct kvm_sregs, idt)", 208);
    public static final int SREGS_CR0 = c("offsetof(struct kvm_sregs, cr0)", 224);
    public static final int SREGS_CR2 = c("offsetof(struct kvm_sregs, cr2)", 232);
    public static final int SREGS_CR3 = c("offsetof(struct kvm_sregs, cr3)", 240);
    public static final int SREGS_CR4 = c("offsetof(struct kvm_sregs, cr4)", 248);
    public static final int SREGS_CR8 = c("offsetof(struct kvm_sregs, cr8)", 256);
    public static final int SREGS_EFER = c("offsetof(struct kvm_sregs, efer)", 264);
    public static final int SREGS_APIC_BASE = c("offsetof(struct kvm_sregs, apic_base)", 272);

    // struct kvm_segment and kvm_dtable.
    public static final int SEG_BASE = c("offsetof(struct kvm_segment, base)", 0);
    public static final int SEG_LIMIT = c("offsetof(struct kvm_segment, limit)", 8);
    public static final int SEG_SELECTOR = c("offsetof(struct kvm_segment, selector)", 12);
    public static final int SEG_TYPE = c("offsetof(struct kvm_segment, type)", 14);
    public static final int SEG_PRESENT = c("offsetof(struct kvm_segment, present)", 15);
    public static final int SEG_DPL = c("offsetof(struct kvm_segment, dpl)", 16);
    public static final int SEG_DB = c("offsetof(struct kvm_segment, db)", 17);
    public static final int SEG_S = c("offsetof(struct kvm_segment, s)", 18);
    public static final int SEG_L = c("offsetof(struct kvm_segment, l)", 19);
    public static final int SEG_G = c("offsetof(struct kvm_segment, g)", 20);
    public static final int SEG_AVL = c("offsetof(struct kvm_segment, avl)", 21);
    public static final int SEG_UNUSABLE = c("offsetof(struct kvm_segment, unusable)", 22);
    public static final int DTABLE_BASE = c("offsetof(struct kvm_dtable, base)", 0);
    public static final int DTABLE_LIMIT = c("offsetof(struct kvm_dtable, limit)", 8);
}
