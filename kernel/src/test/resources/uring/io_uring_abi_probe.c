/*
 * Prints "NAME value" for every constant, structure size and field offset that
 * io.actovisor.kernel.uring.IoUringAbi declares, as the installed <linux/io_uring.h> defines them.
 */
#include <stddef.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <linux/io_uring.h>

#define VAL(key, expr) printf("%s %lld\n", key, (long long) (expr))
#define SIZE(key, type) VAL(key, sizeof(struct type))
#define OFF(key, type, field) VAL(key, offsetof(struct type, field))

int main(void) {
    VAL("SYS_IO_URING_SETUP", __NR_io_uring_setup);
    VAL("SYS_IO_URING_ENTER", __NR_io_uring_enter);
    VAL("SYS_IO_URING_REGISTER", __NR_io_uring_register);

    SIZE("PARAMS_SIZE", io_uring_params);
    OFF("PARAMS_SQ_ENTRIES", io_uring_params, sq_entries);
    OFF("PARAMS_CQ_ENTRIES", io_uring_params, cq_entries);
    OFF("PARAMS_FLAGS", io_uring_params, flags);
    OFF("PARAMS_FEATURES", io_uring_params, features);
    OFF("PARAMS_SQ_OFF", io_uring_params, sq_off);
    OFF("PARAMS_CQ_OFF", io_uring_params, cq_off);

    OFF("SQ_OFF_HEAD", io_sqring_offsets, head);
    OFF("SQ_OFF_TAIL", io_sqring_offsets, tail);
    OFF("SQ_OFF_RING_MASK", io_sqring_offsets, ring_mask);
    OFF("SQ_OFF_RING_ENTRIES", io_sqring_offsets, ring_entries);
    OFF("SQ_OFF_ARRAY", io_sqring_offsets, array);

    OFF("CQ_OFF_HEAD", io_cqring_offsets, head);
    OFF("CQ_OFF_TAIL", io_cqring_offsets, tail);
    OFF("CQ_OFF_RING_MASK", io_cqring_offsets, ring_mask);
    OFF("CQ_OFF_RING_ENTRIES", io_cqring_offsets, ring_entries);
    OFF("CQ_OFF_CQES", io_cqring_offsets, cqes);

    SIZE("SQE_SIZE", io_uring_sqe);
    OFF("SQE_OPCODE", io_uring_sqe, opcode);
    OFF("SQE_FLAGS", io_uring_sqe, flags);
    OFF("SQE_FD", io_uring_sqe, fd);
    OFF("SQE_OFF", io_uring_sqe, off);
    OFF("SQE_ADDR", io_uring_sqe, addr);
    OFF("SQE_LEN", io_uring_sqe, len);
    OFF("SQE_RW_FLAGS", io_uring_sqe, rw_flags);
    OFF("SQE_USER_DATA", io_uring_sqe, user_data);
    OFF("SQE_BUF_INDEX", io_uring_sqe, buf_index);

    SIZE("CQE_SIZE", io_uring_cqe);
    OFF("CQE_USER_DATA", io_uring_cqe, user_data);
    OFF("CQE_RES", io_uring_cqe, res);

    VAL("OFF_SQ_RING", IORING_OFF_SQ_RING);
    VAL("OFF_CQ_RING", IORING_OFF_CQ_RING);
    VAL("OFF_SQES", IORING_OFF_SQES);
    VAL("FEAT_SINGLE_MMAP", IORING_FEAT_SINGLE_MMAP);
    VAL("ENTER_GETEVENTS", IORING_ENTER_GETEVENTS);
    VAL("OP_READ_FIXED", IORING_OP_READ_FIXED);
    VAL("OP_WRITE_FIXED", IORING_OP_WRITE_FIXED);
    VAL("REGISTER_BUFFERS2", IORING_REGISTER_BUFFERS2);
    VAL("REGISTER_BUFFERS_UPDATE", IORING_REGISTER_BUFFERS_UPDATE);
    VAL("UNREGISTER_BUFFERS", IORING_UNREGISTER_BUFFERS);
    VAL("RSRC_REGISTER_SPARSE", IORING_RSRC_REGISTER_SPARSE);

    SIZE("RSRC_REGISTER_SIZE", io_uring_rsrc_register);
    OFF("RSRC_REGISTER_NR", io_uring_rsrc_register, nr);
    OFF("RSRC_REGISTER_FLAGS", io_uring_rsrc_register, flags);
    OFF("RSRC_REGISTER_DATA", io_uring_rsrc_register, data);
    OFF("RSRC_REGISTER_TAGS", io_uring_rsrc_register, tags);

    SIZE("RSRC_UPDATE2_SIZE", io_uring_rsrc_update2);
    OFF("RSRC_UPDATE2_OFFSET", io_uring_rsrc_update2, offset);
    OFF("RSRC_UPDATE2_DATA", io_uring_rsrc_update2, data);
    OFF("RSRC_UPDATE2_TAGS", io_uring_rsrc_update2, tags);
    OFF("RSRC_UPDATE2_NR", io_uring_rsrc_update2, nr);

    SIZE("IOVEC_SIZE", iovec);
    /* Kernel-internal limits (io_uring/rsrc.c), not in the UAPI header: stated here so both sides list them. */
    VAL("MAX_BUFFER_BYTES", 1L << 30);
    VAL("MAX_REGISTERED_BUFFERS", 1 << 14);
    return 0;
}
