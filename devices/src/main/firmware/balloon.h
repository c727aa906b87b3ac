#ifndef BALLOON_H
#define BALLOON_H
#include "actovisor.h"

int balloon_init(u64 base);
u64 balloon_target(void);
void balloon_inflate(u64 first_frame, u64 count);
void balloon_deflate(u64 first_frame, u64 count);
void balloon_set_actual(u64 pages);
void balloon_report_stats(u64 total, u64 free);
int balloon_stats_requested(void);

#endif
