package io.actovisor.devices.boot.linux;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Offsets and sizes of the x86 boot protocol's structures ({@code struct boot_params}, its embedded
 * {@code struct setup_header} and {@code struct boot_e820_entry} of {@code <asm/bootparam.h>}). Each is declared
 * with the C expression that names it; {@code BootParamsAbiTest} compiles them against the installed header and
 * compares, so none of these numbers is guessed.
 */
public final class BootParamsAbi {
    private static final Map<String, Long> EXPRESSIONS = new LinkedHashMap<>();

    private BootParamsAbi() {
    }

    private static int c(String expression, int value) {
        EXPRESSIONS.put(expression, (long) value);
        return value;
    }

    /** The C expression of each constant and the value Java uses for it. */
    public static Map<String, Long> expressions() {
        return Collections.unmodifiableMap(EXPRESSIONS);
    }

    public static final int BOOT_PARAMS_SIZE = c("sizeof(struct boot_params)", 4096);
    public static final int E820_ENTRY_SIZE = c("sizeof(struct boot_e820_entry)", 20);
    public static final int E820_MAX_ENTRIES = c("E820_MAX_ENTRIES_ZEROPAGE", 128);

    // struct boot_params.
    public static final int ACPI_RSDP_ADDR = c("offsetof(struct boot_params, acpi_rsdp_addr)", 112);
    public static final int EXT_RAMDISK_IMAGE = c("offsetof(struct boot_params, ext_ramdisk_image)", 192);
    public static final int EXT_RAMDISK_SIZE = c("offsetof(struct boot_params, ext_ramdisk_size)", 196);
    public static final int EXT_CMD_LINE_PTR = c("offsetof(struct boot_params, ext_cmd_line_ptr)", 200);
    public static final int E820_ENTRIES = c("offsetof(struct boot_params, e820_entries)", 488);
    public static final int HDR = c("offsetof(struct boot_params, hdr)", 0x1f1);
    public static final int E820_TABLE = c("offsetof(struct boot_params, e820_table)", 720);

    // struct boot_e820_entry.
    public static final int E820_ADDR = c("offsetof(struct boot_e820_entry, addr)", 0);
    public static final int E820_SIZE = c("offsetof(struct boot_e820_entry, size)", 8);
    public static final int E820_TYPE = c("offsetof(struct boot_e820_entry, type)", 16);

    // struct setup_header, as offsets into boot_params (and so into the bzImage's first sector).
    public static final int SETUP_SECTS = c("offsetof(struct boot_params, hdr.setup_sects)", 0x1f1);
    public static final int BOOT_FLAG = c("offsetof(struct boot_params, hdr.boot_flag)", 0x1fe);
    public static final int HEADER = c("offsetof(struct boot_params, hdr.header)", 0x202);
    public static final int VERSION = c("offsetof(struct boot_params, hdr.version)", 0x206);
    public static final int TYPE_OF_LOADER = c("offsetof(struct boot_params, hdr.type_of_loader)", 0x210);
    public static final int LOADFLAGS = c("offsetof(struct boot_params, hdr.loadflags)", 0x211);
    public static final int CODE32_START = c("offsetof(struct boot_params, hdr.code32_start)", 0x214);
    public static final int RAMDISK_IMAGE = c("offsetof(struct boot_params, hdr.ramdisk_image)", 0x218);
    public static final int RAMDISK_SIZE = c("offsetof(struct boot_params, hdr.ramdisk_size)", 0x21c);
    public static final int HEAP_END_PTR = c("offsetof(struct boot_params, hdr.heap_end_ptr)", 0x224);
    public static final int CMD_LINE_PTR = c("offsetof(struct boot_params, hdr.cmd_line_ptr)", 0x228);
    public static final int INITRD_ADDR_MAX = c("offsetof(struct boot_params, hdr.initrd_addr_max)", 0x22c);
    public static final int KERNEL_ALIGNMENT = c("offsetof(struct boot_params, hdr.kernel_alignment)", 0x230);
    public static final int RELOCATABLE_KERNEL = c("offsetof(struct boot_params, hdr.relocatable_kernel)", 0x234);
    public static final int XLOADFLAGS = c("offsetof(struct boot_params, hdr.xloadflags)", 0x236);
    public static final int CMDLINE_SIZE = c("offsetof(struct boot_params, hdr.cmdline_size)", 0x238);
    public static final int PAYLOAD_OFFSET = c("offsetof(struct boot_params, hdr.payload_offset)", 0x248);
    public static final int PAYLOAD_LENGTH = c("offsetof(struct boot_params, hdr.payload_length)", 0x24c);
    public static final int PREF_ADDRESS = c("offsetof(struct boot_params, hdr.pref_address)", 0x258);
    public static final int INIT_SIZE = c("offsetof(struct boot_params, hdr.init_size)", 0x260);

    // Flags and magic numbers.
    public static final int LOADED_HIGH = c("LOADED_HIGH", 1);
    public static final int CAN_USE_HEAP = c("CAN_USE_HEAP", 0x80);
    public static final int XLF_KERNEL_64 = c("XLF_KERNEL_64", 1);
    public static final int XLF_CAN_BE_LOADED_ABOVE_4G = c("XLF_CAN_BE_LOADED_ABOVE_4G", 2);
    /** "HdrS", little-endian. */
    public static final int HEADER_MAGIC = 0x53726448;
    public static final int BOOT_FLAG_MAGIC = 0xaa55;

    // e820 types (arch/x86/include/asm/e820/types.h is not exported; these are the ACPI address range types).
    public static final int E820_RAM = 1;
    public static final int E820_RESERVED = 2;
    public static final int E820_ACPI = 3;
}
