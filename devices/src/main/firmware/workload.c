/* The default VM's guest. boot_info.args: [0] sleep between rounds in ms (default 1000), [1] the DMA engine's MMIO
 * base (0: none), [2] the virtio-balloon's MMIO base (0: none), [3] flags: bit 0 reports free pages when the device
 * offers VIRTIO_BALLOON_F_REPORTING.
 * Forever: follow the balloon's target by giving up (or taking back) frames of all its free RAM (the RAM above the
 * work area, whole 2 MiB blocks first) and then of the work area; report free blocks that became free; write a
 * round-dependent pattern over the work-area pages it keeps; checksum them with the CPU and with the DMA engine (through the
 * VFIO container's IOMMU); if the two differ, compare page by page and name the pages that differ; print and report;
 * answer balloon statistics; sleep through the VMM's delay port. */
#include "actovisor.h"
#include "balloon.h"

#define FNV_OFFSET 0xcbf29ce484222325UL
#define FNV_PRIME  0x100000001b3UL
#define PAGE 4096UL

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

static u64 cpu_checksum(const u64 *words, u64 count)
{
    u64 hash = FNV_OFFSET;
    for (u64 i = 0; i < count; i++)
        hash = (hash ^ words[i]) * FNV_PRIME;
    return hash;
}

static void workload(const struct boot_info *info)
{
    printf("hello from guest\n");
    u64 base = info->work_base;
    u64 pages = info->work_size / PAGE;
    u64 sleep_ms = info->args[0] ? info->args[0] : 1000;
    u64 dma = info->args[1];
    u64 held = 0;   /* frames given to the balloon, in plan order */
    u64 work_held = 0;   /* of them, pages at the start of the work area */
    struct balloon_plan plan;
    balloon_plan_init(&plan, base + pages * PAGE, info->ram_size & ~(PAGE - 1), base, pages);
    u64 reported_from = balloon_plan_blocks(&plan);   /* blocks from here on were reported and are still free */
    if (dma && mmio_read64(dma + DMA_ID) != DMA_MAGIC) {
        printf("no DMA engine at %p\n", (void *)dma);
        dma = 0;
    }
    int balloon = info->args[2] && balloon_init(info->args[2]);
    int reporting = balloon && (info->args[3] & 1) && balloon_has_reporting();
    if (balloon)
        printf("balloon: %lu pages balloonable (%lu free blocks), tells host %s, reporting %s\n",
               balloon_plan_count(&plan), balloon_plan_blocks(&plan), balloon_tells_host() ? "yes" : "no",
               reporting ? "on" : "off");
    for (u64 round = 1;; round++) {
        if (balloon) {
            u64 target = balloon_target();
            if (target > balloon_plan_count(&plan))
                target = balloon_plan_count(&plan);
            if (target > held) {
                balloon_inflate(&plan, held, target);
                printf("balloon: inflated %lu pages (now %lu)\n", target - held, target);
            } else if (target < held) {
                /* MUST_TELL_HOST: the frames come back before the guest touches them again. */
                balloon_deflate(&plan, target, held);
                printf("balloon: deflated %lu pages (now %lu)\n", held - target, target);
            }
            held = target;
            work_held = balloon_plan_work_held(&plan, held);
            balloon_set_actual(held);
            u64 first_free = balloon_plan_first_free_block(&plan, held);
            if (reporting && first_free < reported_from) {
                balloon_report_blocks(&plan, first_free, reported_from);
                printf("balloon: reported %lu free blocks\n", reported_from - first_free);
            }
            reported_from = first_free;
        }
        u64 first = base + work_held * PAGE;
        u64 *words = (u64 *)first;
        u64 count = (pages - work_held) * PAGE / 8;
        for (u64 i = 0; i < count; i++)
            words[i] = (i * 0x9e3779b97f4a7c15UL) ^ (round << 32);
        u64 hash = cpu_checksum(words, count);
        if (dma && count) {
            int ok;
            u64 by_device = dma_checksum(dma, first, count * 8, &ok);
            u64 differ = 0;
            if (!ok) {
                printf("round %lu: cpu %016lx dma error %lu\n", round, hash, by_device);
            } else if (by_device == hash) {
                printf("round %lu: pages %lu balloon %lu cpu %016lx dma %016lx match\n", round, pages - work_held,
                       held, hash, by_device);
            } else {
                printf("round %lu: pages %lu balloon %lu cpu %016lx dma %016lx MISMATCH\n", round,
                       pages - work_held, held, hash, by_device);
                for (u64 p = work_held; p < pages; p++) {
                    u64 at = base + p * PAGE;
                    u64 mine = cpu_checksum((const u64 *)at, PAGE / 8);
                    u64 theirs = dma_checksum(dma, at, PAGE, &ok);
                    if (mine != theirs) {
                        if (differ < 16)
                            printf("round %lu: page %p differs: cpu %016lx dma %016lx\n", round, (void *)at, mine,
                                   theirs);
                        differ++;
                    }
                }
                printf("round %lu: %lu pages differ\n", round, differ);
            }
            report(hash);
            report(by_device);
            report(differ);
        } else {
            printf("round %lu: pages %lu balloon %lu cpu %016lx\n", round, pages - work_held, held, hash);
            report(hash);
        }
        if (balloon && balloon_stats_requested())
            balloon_report_stats(info->ram_size, info->ram_size - base - (pages - work_held) * PAGE - held * PAGE);
        sleep_ms_port(sleep_ms);
    }
}
PROGRAM("workload", workload);
