// Baseline for the pinning benchmark: pin GiB-sized memory as io_uring fixed buffers the way the `pinned` IOMMU
// does (sparse table, then one IORING_REGISTER_BUFFERS_UPDATE per buffer of at most `chunk` bytes), and unpin.
// Raw system calls, no liburing. Prints "pin bytes seconds" and "unpin bytes seconds" lines.
// Build: gcc -O2 -o uring_pin_bench uring_pin_bench.c
#define _GNU_SOURCE
#include <linux/io_uring.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static long reg(int fd, unsigned op, void *arg, unsigned n) {
    return syscall(__NR_io_uring_register, fd, op, arg, n);
}

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 1024;
    size_t chunk = (argc > 2 ? strtoul(argv[2], NULL, 10) : 1024) << 20;
    int rounds = argc > 3 ? atoi(argv[3]) : 5;
    size_t size = mib << 20;
    unsigned slots = (unsigned)((size + chunk - 1) / chunk);

    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    int ring = (int)syscall(__NR_io_uring_setup, 8, &p);
    if (ring < 0) { perror("io_uring_setup"); return 1; }

    char *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) { perror("mmap"); return 1; }
    if (madvise(mem, size, MADV_POPULATE_WRITE) != 0) { perror("madvise(MADV_POPULATE_WRITE)"); return 1; }

    struct io_uring_rsrc_register rr;
    memset(&rr, 0, sizeof rr);
    rr.nr = slots;
    rr.flags = IORING_RSRC_REGISTER_SPARSE;
    if (reg(ring, IORING_REGISTER_BUFFERS2, &rr, sizeof rr) < 0) { perror("IORING_REGISTER_BUFFERS2"); return 1; }

    struct iovec *iov = calloc(slots, sizeof *iov);
    struct iovec *empty = calloc(slots, sizeof *empty);
    for (int r = 0; r < rounds; r++) {
        double start = now();
        for (unsigned i = 0; i < slots; i++) {
            size_t off = (size_t)i * chunk;
            iov[i].iov_base = mem + off;
            iov[i].iov_len = size - off < chunk ? size - off : chunk;
            struct io_uring_rsrc_update2 up;
            memset(&up, 0, sizeof up);
            up.offset = i;
            up.data = (uint64_t)(uintptr_t)&iov[i];
            up.nr = 1;
            if (reg(ring, IORING_REGISTER_BUFFERS_UPDATE, &up, sizeof up) < 0) {
                perror("IORING_REGISTER_BUFFERS_UPDATE"); return 1;
            }
        }
        double pinned = now();
        printf("pin %zu %.6f\n", size, pinned - start);
        struct io_uring_rsrc_update2 clear;
        memset(&clear, 0, sizeof clear);
        clear.offset = 0;
        clear.data = (uint64_t)(uintptr_t)empty;
        clear.nr = slots;
        if (reg(ring, IORING_REGISTER_BUFFERS_UPDATE, &clear, sizeof clear) < 0) {
            perror("IORING_REGISTER_BUFFERS_UPDATE (clear)"); return 1;
        }
        printf("unpin %zu %.6f\n", size, now() - pinned);
        fflush(stdout);
    }
    close(ring);
    munmap(mem, size);
    return 0;
}
