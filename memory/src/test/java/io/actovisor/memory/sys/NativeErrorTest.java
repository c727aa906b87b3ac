package io.actovisor.memory.sys;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.actovisor.memory.testing.NativeRequirement;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** Failing system calls produce errors that name the call, the errno and its number. */
class NativeErrorTest {
    private Posix posix;

    @BeforeEach
    void binding() {
        NativeRequirement.require("the libc binding", Posix.unavailabilityCause());
        posix = Posix.system();
    }

    @Test
    void madvise_on_an_unaligned_address_fails_with_einval() {
        long page = posix.pageSize();
        long addr = posix.mmap(0, page, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_PRIVATE | Mman.MAP_ANONYMOUS, -1, 0);
        try {
            NativeException e = assertThrows(NativeException.class,
                    () -> posix.madvise(addr + 1, page, Mman.MADV_DONTNEED));
            assertEquals("madvise(MADV_DONTNEED) failed: EINVAL (22)", e.getMessage());
            assertEquals(Errno.EINVAL, e.errno());
            assertEquals("EINVAL", e.errnoName());
            assertEquals("madvise(MADV_DONTNEED)", e.call());
        } finally {
            posix.munmap(addr, page);
        }
    }

    @Test
    void open_of_a_missing_file_names_the_path() {
        NativeException e = assertThrows(NativeException.class,
                () -> posix.open("/nonexistent/actovisor", Posix.O_RDONLY));
        assertEquals("open(/nonexistent/actovisor) failed: ENOENT (2)", e.getMessage());
    }

    @Test
    void ioctl_on_a_bad_fd_names_the_request() {
        Ioctl request = Ioctl.io("KVM_GET_API_VERSION", 0xAE, 0x00);
        NativeException e = assertThrows(NativeException.class, () -> posix.ioctl(-1, request, 0));
        assertEquals("ioctl(KVM_GET_API_VERSION) failed: EBADF (9)", e.getMessage());
    }

    @Test
    void ioctl_numbers_encode_like_the_kernel_macros() {
        // Known values of _IO/_IOW/_IOR encodings; the KVM and VFIO ABI tests check their own numbers against a
        // compiled C probe.
        assertEquals(0xAE00L, Ioctl.io("KVM_GET_API_VERSION", 0xAE, 0x00).number());
        assertEquals(0x4020AE46L, Ioctl.iow("KVM_SET_USER_MEMORY_REGION", 0xAE, 0x46, 32).number());
        assertEquals(0x8090AE81L, Ioctl.ior("KVM_GET_REGS", 0xAE, 0x81, 144).number());
    }

    @Test
    void native_buffers_check_bounds_and_refuse_use_after_close() {
        NativeBuffer b = NativeBuffer.allocate(16);
        b.putLong(8, 42);
        assertEquals(42, b.getLong(8));
        assertThrows(IndexOutOfBoundsException.class, () -> b.getLong(9));
        b.close();
        b.close();
        assertThrows(IllegalStateException.class, () -> b.getLong(0));
    }

    @Test
    void errno_names_fall_back_to_the_number() {
        assertEquals("EEXIST", Errno.name(17));
        assertEquals("errno 4095", Errno.name(4095));
    }
}
