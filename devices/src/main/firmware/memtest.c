/* The first guest: greet, fill the work area with a pattern, checksum it, report the checksum, halt. */
#include "actovisor.h"

/* io.actovisor.devices.boot.BootLayout.checksum computes the same function over guest memory on the host. */
#define FNV_OFFSET 0xcbf29ce484222325UL
#define FNV_PRIME  0x100000001b3UL

static void memtest(const struct boot_info *info)
{
    printf("hello from guest\n");
    u64 *words = (u64 *)info->work_base;
    u64 count = info->work_size / 8;
    u64 seed = info->args[0];
    for (u64 i = 0; i < count; i++)
        words[i] = (i * 0x9e3779b97f4a7c15UL) ^ seed;
    u64 hash = FNV_OFFSET;
    for (u64 i = 0; i < count; i++)
        hash = (hash ^ words[i]) * FNV_PRIME;
    printf("memtest: %lu MiB at %p checksum %016lx\n", info->work_size >> 20, (void *)info->work_base, hash);
    report(hash);
}
PROGRAM("memtest", memtest);
