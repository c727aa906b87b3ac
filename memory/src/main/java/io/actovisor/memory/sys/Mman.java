package io.actovisor.memory.sys;

/** Constants of mmap(2), madvise(2), memfd_create(2) and fallocate(2) on Linux x86-64. */
public final class Mman {
    public static final int PROT_NONE = 0x0;
    public static final int PROT_READ = 0x1;
    public static final int PROT_WRITE = 0x2;
    public static final int PROT_EXEC = 0x4;

    public static final int MAP_SHARED = 0x01;
    public static final int MAP_PRIVATE = 0x02;
    public static final int MAP_FIXED = 0x10;
    public static final int MAP_ANONYMOUS = 0x20;
    public static final int MAP_NORESERVE = 0x4000;
    public static final int MAP_POPULATE = 0x8000;

    public static final long MAP_FAILED = -1L;

    public static final int MADV_NORMAL = 0;
    public static final int MADV_DONTNEED = 4;
    public static final int MADV_REMOVE = 9;
    public static final int MADV_DONTFORK = 10;
    public static final int MADV_HUGEPAGE = 14;
    public static final int MADV_NOHUGEPAGE = 15;
    public static final int MADV_POPULATE_READ = 22;
    public static final int MADV_POPULATE_WRITE = 23;

    public static final int MFD_CLOEXEC = 0x1;

    public static final int FALLOC_FL_KEEP_SIZE = 0x01;
    public static final int FALLOC_FL_PUNCH_HOLE = 0x02;

    private Mman() {
    }

    /** The name of a madvise advice value, for error messages. */
    public static String adviceName(int advice) {
        return switch (advice) {
            case MADV_NORMAL -> "MADV_NORMAL";
            case MADV_DONTNEED -> "MADV_DONTNEED";
            case MADV_REMOVE -> "MADV_REMOVE";
            case MADV_DONTFORK -> "MADV_DONTFORK";
            case MADV_HUGEPAGE -> "MADV_HUGEPAGE";
            case MADV_NOHUGEPAGE -> "MADV_NOHUGEPAGE";
            case MADV_POPULATE_READ -> "MADV_POPULATE_READ";
            case MADV_POPULATE_WRITE -> "MADV_POPULATE_WRITE";
            default -> "advice " + advice;
        };
    }
}
