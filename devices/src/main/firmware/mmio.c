/* Exercises MMIO dispatch: writes args[1] to the register at args[0], reads it back and reports what it read. */
#include "actovisor.h"

static void mmio_echo(const struct boot_info *info)
{
    u64 reg = info->args[0];
    mmio_write64(reg, info->args[1]);
    u64 back = mmio_read64(reg);
    u32 low = mmio_read32(reg + 8);
    printf("mmio: wrote %lx read %lx and %x\n", info->args[1], back, low);
    report(back);
    report(low);
}
PROGRAM("mmio", mmio_echo);
