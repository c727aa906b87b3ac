/* The firmware's virtio-balloon driver: negotiate, follow num_pages by inflating or deflating pages of the work
 * area (the pages at its start), update actual, and answer statistics requests. */
#include "balloon.h"
#include "virtio.h"

#define BALLOON_DEVICE_ID 5
#define F_STATS_VQ (1u << 1)
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

static struct virtq inflateq, deflateq, statsq;
static u64 device;
static int has_stats;

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
    has_stats = (low & F_STATS_VQ) != 0;
    mmio_write32(base + VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    mmio_write32(base + VIRTIO_MMIO_DRIVER_FEATURES, low & F_STATS_VQ);
    mmio_write32(base + VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    mmio_write32(base + VIRTIO_MMIO_DRIVER_FEATURES, 1);
    mmio_write32(base + VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER
                 | VIRTIO_STATUS_FEATURES_OK);
    if (!(mmio_read32(base + VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK)) {
        printf("balloon: the device refused our features\n");
        return 0;
    }
    if (!virtq_setup(&inflateq, base, 0, QUEUES_AREA) || !virtq_setup(&deflateq, base, 1, QUEUES_AREA + 0x800 * 1 * 2)
        || (has_stats && !virtq_setup(&statsq, base, 2, QUEUES_AREA + 0x800 * 2 * 2))) {
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

u64 balloon_target(void)
{
    mmio_write32(device + VIRTIO_MMIO_INTERRUPT_ACK, mmio_read32(device + VIRTIO_MMIO_INTERRUPT_STATUS));
    return mmio_read32(device + CONFIG_NUM_PAGES);
}

/* Give frames [first, first + count) to the host (or take them back), in batches of MAX_BATCH. */
static void transfer(struct virtq *q, u64 first, u64 count)
{
    volatile u32 *pfns = (volatile u32 *)PFN_BUFFER;
    while (count) {
        u64 n = count < MAX_BATCH ? count : MAX_BATCH;
        for (u64 i = 0; i < n; i++)
            pfns[i] = (u32)(first + i);
        virtq_add(q, PFN_BUFFER, (u32)(4 * n), 0);
        virtq_notify(q);   /* the device answers once the host has handled the frames */
        while (!virtq_used_advanced(q))
            ;
        first += n;
        count -= n;
    }
}

void balloon_inflate(u64 first_frame, u64 count)
{
    transfer(&inflateq, first_frame, count);
}

void balloon_deflate(u64 first_frame, u64 count)
{
    transfer(&deflateq, first_frame, count);
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
