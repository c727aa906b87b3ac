/* virtio-mmio (version 2) and split virtqueues, the guest side; io.actovisor.devices.virtio mirrors it. */
#ifndef VIRTIO_H
#define VIRTIO_H
#include "actovisor.h"

#define VIRTIO_MMIO_MAGIC 0x000
#define VIRTIO_MMIO_VERSION 0x004
#define VIRTIO_MMIO_DEVICE_ID 0x008
#define VIRTIO_MMIO_DEVICE_FEATURES 0x010
#define VIRTIO_MMIO_DEVICE_FEATURES_SEL 0x014
#define VIRTIO_MMIO_DRIVER_FEATURES 0x020
#define VIRTIO_MMIO_DRIVER_FEATURES_SEL 0x024
#define VIRTIO_MMIO_QUEUE_SEL 0x030
#define VIRTIO_MMIO_QUEUE_NUM_MAX 0x034
#define VIRTIO_MMIO_QUEUE_NUM 0x038
#define VIRTIO_MMIO_QUEUE_READY 0x044
#define VIRTIO_MMIO_QUEUE_NOTIFY 0x050
#define VIRTIO_MMIO_INTERRUPT_STATUS 0x060
#define VIRTIO_MMIO_INTERRUPT_ACK 0x064
#define VIRTIO_MMIO_STATUS 0x070
#define VIRTIO_MMIO_QUEUE_DESC_LOW 0x080
#define VIRTIO_MMIO_QUEUE_DESC_HIGH 0x084
#define VIRTIO_MMIO_QUEUE_DRIVER_LOW 0x090
#define VIRTIO_MMIO_QUEUE_DRIVER_HIGH 0x094
#define VIRTIO_MMIO_QUEUE_DEVICE_LOW 0x0a0
#define VIRTIO_MMIO_QUEUE_DEVICE_HIGH 0x0a4
#define VIRTIO_MMIO_CONFIG 0x100

#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER 2
#define VIRTIO_STATUS_DRIVER_OK 4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 64

#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2

struct virtq_desc {
    u64 addr;
    u32 len;
    u16 flags;
    u16 next;
};

/* A queue of QUEUE_SIZE entries laid out by the driver at a fixed guest address. */
#define QUEUE_SIZE 16
struct virtq {
    volatile struct virtq_desc *desc;
    volatile u16 *avail;   /* flags, idx, ring[QUEUE_SIZE] */
    volatile u16 *used;    /* flags, idx, then {u32 id, u32 len}[QUEUE_SIZE] */
    u16 next_avail;
    u16 seen_used;
    u32 index;
    u64 device;
};

static inline void barrier(void) { __asm__ volatile("mfence" ::: "memory"); }

int virtq_setup(struct virtq *q, u64 device, u32 index, u64 area);
void virtq_add(struct virtq *q, u64 addr, u32 len, int device_writes);
void virtq_notify(struct virtq *q);
int virtq_used_advanced(struct virtq *q);
void virtq_wait_all(struct virtq *q);

#endif
