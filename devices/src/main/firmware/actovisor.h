/* The guest side of actovisor's firmware ABI: boot-info page, report ports, and the tiny runtime. */
#ifndef ACTOVISOR_H
#define ACTOVISOR_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;

/* Boot-info page written by the VMM (io.actovisor.devices.boot.BootLayout.BootInfo mirrors this layout). */
#define BOOT_INFO_MAGIC 0x6f666e69746f6f62UL /* "bootinfo" little-endian */
struct boot_info {
    u64 magic;
    char program[32];      /* which PROGRAM to run, NUL-terminated */
    u64 ram_size;          /* bytes of RAM from guest-physical 0 */
    u64 work_base;         /* guest-physical start of the area programs may scribble on */
    u64 work_size;         /* bytes in that area (e.g. N MiB for memtest) */
    u64 args[4];           /* program-specific arguments */
};

/* Report port: the guest writes the low then the high 32 bits of a 64-bit value; the high write delivers it. */
#define REPORT_PORT_LOW  0x510
#define REPORT_PORT_HIGH 0x514
/* Delay port: a write of N makes the VMM answer after N milliseconds, so an idle guest does not spin. */
#define DELAY_PORT 0x518
#define COM1 0x3f8

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline void outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline u32 inl(u16 port) { u32 v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline void mmio_write32(u64 addr, u32 v) { *(volatile u32 *)addr = v; }
static inline u32 mmio_read32(u64 addr) { return *(volatile u32 *)addr; }
static inline void mmio_write64(u64 addr, u64 v) { *(volatile u64 *)addr = v; }
static inline u64 mmio_read64(u64 addr) { return *(volatile u64 *)addr; }
static inline void sleep_ms_port(u64 ms) { outl(DELAY_PORT, (u32)ms); }
static inline void halt(void) { for (;;) __asm__ volatile("cli; hlt"); }

void serial_init(void);
void serial_putc(char c);
void printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void report(u64 value);
int streq(const char *a, const char *b);

/* A guest program: add a C file with PROGRAM("name", fn) and it can be selected from the boot-info page. */
struct program {
    const char *name;
    void (*main)(const struct boot_info *info);
};
#define PROGRAM(pname, fn) \
    static const struct program __program_##fn __attribute__((used, section(".programs"), aligned(8))) = { pname, fn }

#endif
