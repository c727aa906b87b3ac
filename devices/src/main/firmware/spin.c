/* A guest that never exits on its own: tests that pause and stop reach a vCPU busy in guest code. */
#include "actovisor.h"

static void spin(const struct boot_info *info)
{
    (void)info;
    printf("spinning\n");
    volatile u64 counter = 0;
    for (;;)
        counter++;
}
PROGRAM("spin", spin);
