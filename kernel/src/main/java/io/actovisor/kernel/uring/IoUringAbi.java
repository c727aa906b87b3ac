package io.actovisor.kernel.uring;

/**
 * The io_uring ABI this project uses (x86-64), declared once. {@code IoUringAbiTest} compiles a C probe against
 * {@code /usr/include/linux/io_uring.h} and compares every value here with the header's.
 */
public final class IoUringAbi {
    private IoUringAbi() {
    }

    /** System call numbers on x86-64. */
    public static final long SYS_IO_URING_SETUP = 425;
    public static final long SYS_IO_URING_ENTER = 426;
    public static final long SYS_IO_URING_REGISTER = 427;

    /** {@code struct io_uring_params}. */
    public static final int PARAMS_SIZE = 120;
    public static final int PARAMS_SQ_ENTRIES = 0;
    public static final int PARAMS_CQ_ENTRIES = 4;
    public static final int PARAMS_FLAGS = 8;
    public static final int PARAMS_FEATURES = 20;
    public static final int PARAMS_SQ_OFF = 40;
    public static final int PARAMS_CQ_OFF = 80;

    /** {@code struct io_sqring_offsets}, relative to {@link #PARAMS_SQ_OFF}. */
    public static final int SQ_OFF_HEAD = 0;
    public static final int SQ_OFF_TAIL = 4;
    public static final int SQ_OFF_RING_MASK = 8;
    public static final int SQ_OFF_RING_ENTRIES = 12;
    public static final int SQ_OFF_ARRAY = 24;

    /** {@code struct io_cqring_offsets}, relative to {@link #PARAMS_CQ_OFF}. */
    public static final int CQ_OFF_HEAD = 0;
    public static final int CQ_OFF_TAIL = 4;
    public static final int CQ_OFF_RING_MASK = 8;
    public static final int CQ_OFF_RING_ENTRIES = 12;
    public static final int CQ_OFF_CQES = 20;

    /** {@code struct io_uring_sqe}. */
    public static final int SQE_SIZE = 64;
    public static final int SQE_OPCODE = 0;
    public static final int SQE_FLAGS = 1;
    public static final int SQE_FD = 4;
    public static final int SQE_OFF = 8;
    public static final int SQE_ADDR = 16;
    public static final int SQE_LEN = 24;
    public static final int SQE_RW_FLAGS = 28;
    public static final int SQE_USER_DATA = 32;
    public static final int SQE_BUF_INDEX = 40;

    /** {@code struct io_uring_cqe}. */
    public static final int CQE_SIZE = 16;
    public static final int CQE_USER_DATA = 0;
    public static final int CQE_RES = 8;

    /** mmap offsets of the rings. */
    public static final long OFF_SQ_RING = 0L;
    public static final long OFF_CQ_RING = 0x8000000L;
    public static final long OFF_SQES = 0x10000000L;

    public static final int FEAT_SINGLE_MMAP = 1;
    public static final int ENTER_GETEVENTS = 1;

    public static final int OP_READ_FIXED = 4;
    public static final int OP_WRITE_FIXED = 5;

    public static final int REGISTER_BUFFERS2 = 15;
    public static final int REGISTER_BUFFERS_UPDATE = 16;
    public static final int UNREGISTER_BUFFERS = 1;
    public static final int RSRC_REGISTER_SPARSE = 1;

    /** {@code struct io_uring_rsrc_register}. */
    public static final int RSRC_REGISTER_SIZE = 32;
    public static final int RSRC_REGISTER_NR = 0;
    public static final int RSRC_REGISTER_FLAGS = 4;
    public static final int RSRC_REGISTER_DATA = 16;
    public static final int RSRC_REGISTER_TAGS = 24;

    /** {@code struct io_uring_rsrc_update2}. */
    public static final int RSRC_UPDATE2_SIZE = 32;
    public static final int RSRC_UPDATE2_OFFSET = 0;
    public static final int RSRC_UPDATE2_DATA = 8;
    public static final int RSRC_UPDATE2_TAGS = 16;
    public static final int RSRC_UPDATE2_NR = 24;

    /** {@code struct iovec}. */
    public static final int IOVEC_SIZE = 16;

    /** The kernel's limit on one registered buffer (io_uring/rsrc.c: 1 GiB). */
    public static final long MAX_BUFFER_BYTES = 1L << 30;
    /** The kernel's limit on registered buffers per ring ({@code IORING_MAX_REG_BUFFERS}, 1 << 14). */
    public static final int MAX_REGISTERED_BUFFERS = 1 << 14;
}
