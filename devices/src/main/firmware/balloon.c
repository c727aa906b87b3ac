/* The firmware's virtio-balloon driver: negotiate MUST_TELL_HOST (the workload deflates before it reuses a page),
 * STATS_VQ and REPORTING; inflate or deflate frames in the order of a balloon_plan (whole free 2 MiB blocks first);
 * update actual; answer statistics requests; report free blocks on the reporting queue (one descriptor per chunk,
 * device-writable, as Linux's page reporting does). */
#include "balloon.h"
#include "virtio.h"

#define BALLOON_DEVICE_ID 5
#define F_MUST_TELL_HOST (1u << 0)
#define F_STATS_VQ (1u << 1)
#define F_REPORTING (1u << 5)
#define CONFIG_NUM_PAGES (VIRTIO_MMIO_CONFIG + 0)
#define CONFIG_ACTUAL (VIRTIO_MMIO_CONFIG + 4)
#define QUEUES_AREA 0x90000UL
#define PFN_BUFFER 0x98000UL
#define STATS_BUFFER 0x99000UL
#define MAX_BATCH 1024

struct stat_entry {
    u16 tag;
    u64 value;
} __attribute__((packed));

static struct virtq inflateq, deflateq, statsq, reportq;
static u64 device;
static int has_stats;
static int has_reporting;
static int tells_host;

int balloon_init(u64 base)
{
    if (mmio_read32(base + VIRTIO_MMIO_MAGIC) != 0x74726976 || mmio_read32(base + VIRTIO_MMIO_VERSION) != 2
        || mmio_read32(base + VIRTIO_MMIO_DEVICE_ID) != BALLOON_DEVICE_ID) {
        printf("balloon: no virtio-balloon at %p\n", (void *)base);
        return 0;
    }
    device = base;
    mmio_write32(base + VIRTIO_MMIO_STATUS, 0);
    mmio_write32(base + VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    mmio_write32(base + VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
    u32 low = mmio_read32(base + VIRTIO_MMIO_DEVICE_FEATURES);
    mmio_write32(base + VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
    u32 high = mmio_read32(base + VIRTIO_MMIO_DEVICE_FEATURES);
    if (!(high & 1)) {
        printf("balloon: the device does not offer VIRTIO_F_VERSION_1\n");
        return 0;
    }
    u32 wanted = low & (F_MUST_TELL_HOST | F_STATS_VQ | F_REPORTING);
    has_stats = (wanted & F_STATS_VQ) != 0;
    has_reporting = (wanted & F_REPORTING) != 0;
    tells_host = (wanted & F_MUST_TELL_HOST) != 0;
    mmio_write32(base + VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    mmio_write32(base + VIRTIO_MMIO_DRIVER_FEATURES, wanted);
    mmio_write32(base + VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    mmio_write32(base + VIRTIO_MMIO_DRIVER_FEATURES, 1);
    mmio_write32(base + VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER
                 | VIRTIO_STATUS_FEATURES_OK);
    if (!(mmio_read32(base + VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK)) {
        printf("balloon: the device refused our features\n");
        return 0;
    }
    if (!virtq_setup(&inflateq, base, 0, QUEUES_AREA) || !virtq_setup(&deflateq, base, 1, QUEUES_AREA + 0x800 * 1 * 2)
        || (has_stats && !virtq_setup(&statsq, base, 2, QUEUES_AREA + 0x800 * 2 * 2))
        /* Queues are numbered among those that exist: reporting follows statistics, or takes its place. */
        || (has_reporting && !virtq_setup(&reportq, base, has_stats ? 3 : 2, QUEUES_AREA + 0x800 * 3 * 2))) {
        printf("balloon: queue setup failed\n");
        return 0;
    }
    mmio_write32(base + VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER
                 | VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
    if (has_stats) {
        balloon_report_stats(0, 0);
    }
    printf("balloon: ready (stats %s)\n", has_stats ? "on" : "off");
    return 1;
}

int balloon_tells_host(void)
{
    return tells_host;
}

int balloon_has_reporting(void)
{
    return has_reporting;
}

void balloon_plan_init(struct balloon_plan *p, u64 free_base, u64 free_end, u64 work_base, u64 work_pages)
{
    p->free_base = free_base;
    p->free_end = free_end < free_base ? free_base : free_end;
    p->work_base = work_base;
    p->work_pages = work_pages;
}

u64 balloon_plan_blocks(const struct balloon_plan *p)
{
    u64 first = (p->free_base + BALLOON_BLOCK - 1) & ~(BALLOON_BLOCK - 1);
    u64 last = p->free_end & ~(BALLOON_BLOCK - 1);
    return last > first ? (last - first) / BALLOON_BLOCK : 0;
}

static u64 free_pages(const struct balloon_plan *p)
{
    return (p->free_end - p->free_base) / PAGE_SIZE;
}

u64 balloon_plan_count(const struct balloon_plan *p)
{
    return free_pages(p) + p->work_pages;
}

u64 balloon_plan_work_held(const struct balloon_plan *p, u64 held)
{
    if (held <= free_pages(p))
        return 0;
    held -= free_pages(p);
    return held < p->work_pages ? held : p->work_pages;
}

/* The first whole free block (in plan order) not even partly in the balloon when it holds `held` frames. */
u64 balloon_plan_first_free_block(const struct balloon_plan *p, u64 held)
{
    u64 per_block = BALLOON_BLOCK / PAGE_SIZE;
    u64 first = (held + per_block - 1) / per_block;
    u64 blocks = balloon_plan_blocks(p);
    return first < blocks ? first : blocks;
}

/* The frame number of the index-th frame inflated. */
static u64 plan_frame(const struct balloon_plan *p, u64 index)
{
    u64 per_block = BALLOON_BLOCK / PAGE_SIZE;
    u64 blocks = balloon_plan_blocks(p);
    u64 in_blocks = blocks * per_block;
    u64 top = p->free_end & ~(BALLOON_BLOCK - 1);
    if (index < in_blocks)
        return (top - (index / per_block + 1) * BALLOON_BLOCK) / PAGE_SIZE + index % per_block;
    u64 rest = index - in_blocks;
    u64 other_free = free_pages(p) - in_blocks;
    if (rest >= other_free)
        return p->work_base / PAGE_SIZE + (rest - other_free);
    if (!blocks)
        return p->free_base / PAGE_SIZE + rest;
    u64 below = (top - blocks * BALLOON_BLOCK - p->free_base) / PAGE_SIZE;
    return rest < below ? p->free_base / PAGE_SIZE + rest : top / PAGE_SIZE + (rest - below);
}

u64 balloon_target(void)
{
    mmio_write32(device + VIRTIO_MMIO_INTERRUPT_ACK, mmio_read32(device + VIRTIO_MMIO_INTERRUPT_STATUS));
    return mmio_read32(device + CONFIG_NUM_PAGES);
}

/* Give the frames of plan indexes [from, to) to the host (or take them back), in batches of MAX_BATCH. */
static void transfer(struct virtq *q, const struct balloon_plan *p, u64 from, u64 to)
{
    volatile u32 *pfns = (volatile u32 *)PFN_BUFFER;
    while (from < to) {
        u64 n = to - from < MAX_BATCH ? to - from : MAX_BATCH;
        for (u64 i = 0; i < n; i++)
            pfns[i] = (u32)plan_frame(p, from + i);
        virtq_add(q, PFN_BUFFER, (u32)(4 * n), 0);
        virtq_notify(q);   /* the device answers once the host has handled the frames */
        while (!virtq_used_advanced(q))
            ;
        from += n;
    }
}

void balloon_inflate(const struct balloon_plan *p, u64 from, u64 to)
{
    transfer(&inflateq, p, from, to);
}

void balloon_deflate(const struct balloon_plan *p, u64 from, u64 to)
{
    transfer(&deflateq, p, from, to);
}

/* Report whole free blocks [first_block, end_block) of the plan, each one chunk, QUEUE_SIZE chunks per notify; the
 * device hands every buffer back (whether the host discarded the chunk or not) before the notify completes. */
void balloon_report_blocks(const struct balloon_plan *p, u64 first_block, u64 end_block)
{
    u64 per_block = BALLOON_BLOCK / PAGE_SIZE;
    while (has_reporting && first_block < end_block) {
        u64 n = 0;
        for (; n < QUEUE_SIZE && first_block < end_block; n++, first_block++)
            virtq_add(&reportq, plan_frame(p, first_block * per_block) * PAGE_SIZE, (u32)BALLOON_BLOCK, 1);
        virtq_notify(&reportq);
        virtq_wait_all(&reportq);
    }
}

void balloon_set_actual(u64 pages)
{
    mmio_write32(device + CONFIG_ACTUAL, (u32)pages);
}

void balloon_report_stats(u64 total, u64 free)
{
    volatile struct stat_entry *s = (volatile struct stat_entry *)STATS_BUFFER;
    u16 tags[] = {0, 1, 2, 3, 4, 5, 6, 7};
    u64 values[] = {0, 0, 0, 0, free, total, free, 0};
    for (int i = 0; i < 8; i++) {
        s[i].tag = tags[i];
        s[i].value = values[i];
    }
    virtq_add(&statsq, STATS_BUFFER, 8 * sizeof(struct stat_entry), 0);
    virtq_notify(&statsq);
}

int balloon_stats_requested(void)
{
    return has_stats && virtq_used_advanced(&statsq);
}
