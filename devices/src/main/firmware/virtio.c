/* virtio-mmio queues for the firmware's drivers: one descriptor per buffer, polled completion. */
#include "virtio.h"

int virtq_setup(struct virtq *q, u64 device, u32 index, u64 area)
{
    q->desc = (volatile struct virtq_desc *)area;
    q->avail = (volatile u16 *)(area + 16 * QUEUE_SIZE);
    q->used = (volatile u16 *)(area + 1024);
    q->next_avail = 0;
    q->seen_used = 0;
    q->index = index;
    q->device = device;
    for (u64 *p = (u64 *)area; p < (u64 *)(area + 2048); p++)
        *p = 0;
    mmio_write32(device + VIRTIO_MMIO_QUEUE_SEL, index);
    if (mmio_read32(device + VIRTIO_MMIO_QUEUE_NUM_MAX) < QUEUE_SIZE)
        return 0;
    mmio_write32(device + VIRTIO_MMIO_QUEUE_NUM, QUEUE_SIZE);
    mmio_write32(device + VIRTIO_MMIO_QUEUE_DESC_LOW, (u32)(u64)q->desc);
    mmio_write32(device + VIRTIO_MMIO_QUEUE_DESC_HIGH, (u32)((u64)q->desc >> 32));
    mmio_write32(device + VIRTIO_MMIO_QUEUE_DRIVER_LOW, (u32)(u64)q->avail);
    mmio_write32(device + VIRTIO_MMIO_QUEUE_DRIVER_HIGH, (u32)((u64)q->avail >> 32));
    mmio_write32(device + VIRTIO_MMIO_QUEUE_DEVICE_LOW, (u32)(u64)q->used);
    mmio_write32(device + VIRTIO_MMIO_QUEUE_DEVICE_HIGH, (u32)((u64)q->used >> 32));
    mmio_write32(device + VIRTIO_MMIO_QUEUE_READY, 1);
    return mmio_read32(device + VIRTIO_MMIO_QUEUE_READY) == 1;
}

/* Offer one buffer: descriptor i is used for ring slot i, so no free list is needed. */
void virtq_add(struct virtq *q, u64 addr, u32 len, int device_writes)
{
    u16 slot = q->next_avail % QUEUE_SIZE;
    q->desc[slot].addr = addr;
    q->desc[slot].len = len;
    q->desc[slot].flags = device_writes ? VIRTQ_DESC_F_WRITE : 0;
    q->desc[slot].next = 0;
    q->avail[2 + slot] = slot;
    barrier();
    q->next_avail++;
    q->avail[1] = q->next_avail;
    barrier();
}

void virtq_notify(struct virtq *q)
{
    mmio_write32(q->device + VIRTIO_MMIO_QUEUE_NOTIFY, q->index);
}

/* Whether the device returned buffers since the last call. */
int virtq_used_advanced(struct virtq *q)
{
    barrier();
    u16 idx = q->used[1];
    if (idx == q->seen_used)
        return 0;
    q->seen_used = idx;
    return 1;
}

/* Wait until the device returned every buffer offered so far. */
void virtq_wait_all(struct virtq *q)
{
    for (;;) {
        barrier();
        if (q->used[1] == q->next_avail)
            break;
    }
    q->seen_used = q->next_avail;
}
