#ifndef BALLOON_H
#define BALLOON_H
#include "actovisor.h"

/* The order in which the guest gives frames to the balloon (io.actovisor.devices.guest.scripted.BalloonablePages
 * mirrors it): the whole 2 MiB-aligned blocks of free RAM [free_base, free_end) from the top down, then the other
 * free frames, then the work area from its start. Index i is the i-th frame inflated; deflate gives back the
 * highest indexes first. */
struct balloon_plan {
    u64 free_base;
    u64 free_end;
    u64 work_base;
    u64 work_pages;
};

#define BALLOON_BLOCK (2UL << 20)
#define PAGE_SIZE 4096UL

int balloon_init(u64 base);
int balloon_tells_host(void);
int balloon_has_reporting(void);
u64 balloon_target(void);
void balloon_plan_init(struct balloon_plan *p, u64 free_base, u64 free_end, u64 work_base, u64 work_pages);
u64 balloon_plan_count(const struct balloon_plan *p);
u64 balloon_plan_blocks(const struct balloon_plan *p);
u64 balloon_plan_work_held(const struct balloon_plan *p, u64 held);
u64 balloon_plan_first_free_block(const struct balloon_plan *p, u64 held);
void balloon_inflate(const struct balloon_plan *p, u64 from, u64 to);
void balloon_deflate(const struct balloon_plan *p, u64 from, u64 to);
void balloon_report_blocks(const struct balloon_plan *p, u64 first_block, u64 end_block);
void balloon_set_actual(u64 pages);
void balloon_report_stats(u64 total, u64 free);
int balloon_stats_requested(void);

#endif
