/* The default VM's guest. Forever: write a round-dependent pattern over the work area, checksum it with the CPU,
 * ask the DMA engine (if the VMM gave one, boot_info.args[1]) to checksum the same memory through the IOMMU, print
 * and report both, then sleep through the VMM's delay port (boot_info.args[0] ms, default 1000). */
#include "actovisor.h"

#define FNV_OFFSET 0xcbf29ce484222325UL
#define FNV_PRIME  0x100000001b3UL

/* io.actovisor.devices.dma.DmaEngine: the register map. */
#define DMA_ID 0x00
#define DMA_SOURCE 0x08
#define DMA_LENGTH 0x18
#define DMA_MODE 0x20
#define DMA_DOORBELL 0x28
#define DMA_STATUS 0x30
#define DMA_RESULT 0x38
#define DMA_ERROR 0x40
#define DMA_MAGIC 0x31414d444f544341UL
#define DMA_MODE_CHECKSUM 1
#define DMA_STATUS_BUSY 1
#define DMA_STATUS_DONE 2

static u64 dma_checksum(u64 dma, u64 base, u64 size, int *ok)
{
    mmio_write64(dma + DMA_SOURCE, base);
    mmio_write64(dma + DMA_LENGTH, size);
    mmio_write64(dma + DMA_MODE, DMA_MODE_CHECKSUM);
    mmio_write64(dma + DMA_DOORBELL, 1);
    u64 status;
    while ((status = mmio_read64(dma + DMA_STATUS)) == DMA_STATUS_BUSY)
        ;
    *ok = status == DMA_STATUS_DONE;
    return *ok ? mmio_read64(dma + DMA_RESULT) : mmio_read64(dma + DMA_ERROR);
}

static void workload(const struct boot_info *info)
{
    printf("hello from guest\n");
    u64 *words = (u64 *)info->work_base;
    u64 count = info->work_size / 8;
    u64 sleep_ms = info->args[0] ? info->args[0] : 1000;
    u64 dma = info->args[1];
    if (dma && mmio_read64(dma + DMA_ID) != DMA_MAGIC) {
        printf("no DMA engine at %p\n", (void *)dma);
        dma = 0;
    }
    for (u64 round = 1;; round++) {
        for (u64 i = 0; i < count; i++)
            words[i] = (i * 0x9e3779b97f4a7c15UL) ^ (round << 32);
        u64 hash = FNV_OFFSET;
        for (u64 i = 0; i < count; i++)
            hash = (hash ^ words[i]) * FNV_PRIME;
        if (dma) {
            int ok;
            u64 by_device = dma_checksum(dma, info->work_base, info->work_size, &ok);
            if (!ok)
                printf("round %lu: cpu %016lx dma error %lu\n", round, hash, by_device);
            else
                printf("round %lu: cpu %016lx dma %016lx %s\n", round, hash, by_device,
                       by_device == hash ? "match" : "MISMATCH");
            report(hash);
            report(by_device);
        } else {
            printf("round %lu: cpu %016lx\n", round, hash);
            report(hash);
        }
        sleep_ms_port(sleep_ms);
    }
}
PROGRAM("workload", workload);
