/* The firmware runtime: COM1 output, printf, the report port and program selection. */
#include "actovisor.h"
#include <stdarg.h>

extern const struct program __programs_start[], __programs_end[];

void serial_init(void)
{
    outb(COM1 + 1, 0x00);   /* no interrupts */
    outb(COM1 + 3, 0x80);   /* DLAB on */
    outb(COM1 + 0, 0x01);   /* 115200 baud */
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03);   /* 8N1, DLAB off */
    outb(COM1 + 2, 0xc7);   /* FIFO on */
    outb(COM1 + 4, 0x03);   /* DTR, RTS */
}

void serial_putc(char c)
{
    if (c == '\n')
        serial_putc('\r');
    while (!(inb(COM1 + 5) & 0x20))   /* wait for THR empty */
        ;
    outb(COM1, (u8)c);
}

static void put_string(const char *s)
{
    while (*s)
        serial_putc(*s++);
}

static void put_unsigned(u64 v, unsigned base, int width, char pad)
{
    char digits[24];
    int n = 0;
    do {
        unsigned d = (unsigned)(v % base);
        digits[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
        v /= base;
    } while (v);
    while (n < width--)
        serial_putc(pad);
    while (n)
        serial_putc(digits[--n]);
}

/* Enough printf for diagnostics: %s %c %d %u %x %lx %lu %ld %p, with a zero-pad width. */
void printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            serial_putc(*fmt);
            continue;
        }
        fmt++;
        char pad = ' ';
        int width = 0;
        if (*fmt == '0') {
            pad = '0';
            fmt++;
        }
        while (*fmt >= '0' && *fmt <= '9')
            width = width * 10 + (*fmt++ - '0');
        int is_long = 0;
        while (*fmt == 'l') {
            is_long = 1;
            fmt++;
        }
        switch (*fmt) {
        case 's': put_string(va_arg(ap, const char *)); break;
        case 'c': serial_putc((char)va_arg(ap, int)); break;
        case 'd': {
            long v = is_long ? va_arg(ap, long) : va_arg(ap, int);
            if (v < 0) {
                serial_putc('-');
                v = -v;
            }
            put_unsigned((u64)v, 10, width, pad);
            break;
        }
        case 'u': put_unsigned(is_long ? va_arg(ap, u64) : va_arg(ap, u32), 10, width, pad); break;
        case 'x': put_unsigned(is_long ? va_arg(ap, u64) : va_arg(ap, u32), 16, width, pad); break;
        case 'p': put_string("0x"); put_unsigned((u64)va_arg(ap, void *), 16, 0, ' '); break;
        case '%': serial_putc('%'); break;
        default: serial_putc('?'); break;
        }
    }
    va_end(ap);
}

void report(u64 value)
{
    outl(REPORT_PORT_LOW, (u32)value);
    outl(REPORT_PORT_HIGH, (u32)(value >> 32));
}

int streq(const char *a, const char *b)
{
    while (*a && *a == *b) {
        a++;
        b++;
    }
    return *a == *b;
}

void firmware_main(const struct boot_info *info)
{
    serial_init();
    if (info->magic != BOOT_INFO_MAGIC) {
        printf("bad boot info magic %lx\n", info->magic);
        halt();
    }
    for (const struct program *p = __programs_start; p < __programs_end; p++) {
        if (streq(p->name, info->program)) {
            p->main(info);
            halt();
        }
    }
    printf("no program named '%s'\n", info->program);
    halt();
}
