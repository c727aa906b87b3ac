// Baseline for the balloon-inflate benchmark: discard a populated region with MADV_DONTNEED, once per 4 KiB page
// and once per coalesced range. Prints "mode pages seconds" lines. Build: gcc -O2 -o madvise_bench madvise_bench.c
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double run(char *mem, size_t size, size_t step) {
    if (madvise(mem, size, MADV_POPULATE_WRITE) != 0) {
        perror("madvise(MADV_POPULATE_WRITE)");
        exit(1);
    }
    double start = now();
    for (size_t off = 0; off < size; off += step) {
        if (madvise(mem + off, step, MADV_DONTNEED) != 0) {
            perror("madvise(MADV_DONTNEED)");
            exit(1);
        }
    }
    return now() - start;
}

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 256;
    int rounds = argc > 2 ? atoi(argv[2]) : 5;
    size_t size = mib << 20;
    char *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    size_t pages = size / 4096;
    for (int r = 0; r < rounds; r++) {
        printf("per-page %zu %.6f\n", pages, run(mem, size, 4096));
        printf("coalesced %zu %.6f\n", pages, run(mem, size, size));
        fflush(stdout);
    }
    munmap(mem, size);
    return 0;
}
