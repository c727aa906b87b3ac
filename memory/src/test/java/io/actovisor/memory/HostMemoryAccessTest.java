package io.actovisor.memory;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.memory.sys.Errno;
import io.actovisor.memory.sys.Mman;
import io.actovisor.memory.sys.NativeException;
import io.actovisor.memory.sys.Posix;
import io.actovisor.memory.sys.ForwardingPosix;
import io.actovisor.memory.testing.NativeRequirement;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.OptionalInt;
import java.util.OptionalLong;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Host memory accessors beyond the basics in {@link HostMemoryTest}: values across the 1 GiB windows the mapping is
 * accessed through, the identity of a mapping, the populate fallback for old kernels, clean-up when creation fails,
 * and page frame numbers.
 */
class HostMemoryAccessTest {
    private static final long PAGE = HostMemory.PAGE_SIZE;
    private static final long GIB = 1L << 30;

    @BeforeAll
    static void native_layer_is_there() {
        NativeRequirement.require("the libc binding", Posix.unavailabilityCause());
    }

    @Test
    void values_across_a_gibibyte_boundary_land_on_the_right_pages() {
        // 4 GiB + 2 pages of MAP_NORESERVE memory: only the pages touched here are ever backed.
        try (HostMemory mem = HostMemory.anonymous("big", 4 * GIB + 2 * PAGE)) {
            HostAddress edge = mem.base().checkedAdd(GIB);
            mem.writeLong(edge.checkedSub(4), 0x0102030405060708L);
            assertEquals(0x0102030405060708L, mem.readLong(edge.checkedSub(4)));
            assertArrayEquals(new byte[] {8, 7, 6, 5}, mem.read(edge.checkedSub(4), 4));
            assertArrayEquals(new byte[] {4, 3, 2, 1}, mem.read(edge, 4));
            mem.writeInt(edge.checkedSub(2), 0x11223344);
            assertEquals(0x11223344, mem.readInt(edge.checkedSub(2)));
            assertEquals(0x44, mem.readByte(edge.checkedSub(2)));
            assertEquals(0x11, mem.readByte(edge.checkedAdd(1)));

            byte[] src = {0, 0, 1, 2, 3, 4, 5, 6};
            HostAddress second = mem.base().checkedAdd(2 * GIB);
            mem.write(second.checkedSub(3), src, 2, 6);
            byte[] dst = new byte[9];
            mem.read(second.checkedSub(3), dst, 1, 6);
            assertArrayEquals(new byte[] {0, 1, 2, 3, 4, 5, 6, 0, 0}, dst);
            assertEquals(4, mem.readByte(second));

            // The bytes really sit at base + offset: exactly the pages written are resident, nowhere else.
            HostAddress top = mem.base().checkedAdd(4 * GIB + PAGE);
            mem.writeByte(top, (byte) 9);
            assertEquals(9, mem.readByte(top));
            assertEquals(PAGE, mem.residentBytes(AddressRange.of(edge.value(), PAGE)));
            assertEquals(PAGE, mem.residentBytes(AddressRange.of(second.value(), PAGE)));
            assertEquals(PAGE, mem.residentBytes(AddressRange.of(top.value(), PAGE)));
            assertEquals(0, mem.residentBytes(AddressRange.of(mem.base().value(), PAGE)));
            assertEquals(5 * PAGE, mem.residentBytes(mem.hostRange()));
        }
    }

    @Test
    void ints_and_zero_length_accesses_within_a_page() {
        try (HostMemory mem = HostMemory.anonymous("ints", PAGE)) {
            mem.writeInt(mem.base().checkedAdd(8), 0xcafebabe);
            assertEquals(0xcafebabe, mem.readInt(mem.base().checkedAdd(8)));
            assertArrayEquals(new byte[] {(byte) 0xbe, (byte) 0xba, (byte) 0xfe, (byte) 0xca},
                    mem.read(mem.base().checkedAdd(8), 4));
            assertArrayEquals(new byte[0], mem.read(mem.base(), 0));
            assertArrayEquals(new byte[0], mem.read(mem.base().checkedAdd(PAGE), 0));
            assertThrows(IndexOutOfBoundsException.class, () -> mem.readInt(mem.base().checkedAdd(PAGE - 3)));
        }
    }

    @Test
    void a_mapping_knows_its_name_kind_and_memfd() throws IOException {
        try (HostMemory anon = HostMemory.anonymous("anon-id", PAGE);
                HostMemory shared = HostMemory.shared("shared-id", 2 * PAGE)) {
            assertEquals("anon-id", anon.name());
            assertFalse(anon.isShared());
            assertEquals(OptionalInt.empty(), anon.memfd());
            assertEquals("HostMemory(anon-id, anonymous, " + AddressRange.of(anon.base().value(), PAGE) + ")",
                    anon.toString());
            assertTrue(shared.isShared());
            int fd = shared.memfd().orElseThrow();
            assertTrue(Files.readSymbolicLink(Path.of("/proc/self/fd/" + fd)).toString()
                    .startsWith("/memfd:actovisor:shared-id"));
            assertEquals("HostMemory(shared-id, memfd, " + shared.hostRange() + ")", shared.toString());
            assertFalse(shared.isClosed());
            shared.close();
            assertTrue(shared.isClosed());
        }
    }

    /** A kernel without MADV_POPULATE_WRITE (before 5.14) answers EINVAL; other errors are not swallowed. */
    private static final class OldKernel extends ForwardingPosix {
        private final int errno;

        OldKernel(int errno) {
            super(Posix.system());
            this.errno = errno;
        }

        @Override
        public void madvise(long addr, long length, int advice) {
            if (advice == Mman.MADV_POPULATE_WRITE) {
                throw new NativeException("madvise(MADV_POPULATE_WRITE)", errno);
            }
            super.madvise(addr, length, advice);
        }
    }

    @Test
    void populate_touches_every_page_itself_when_the_kernel_lacks_populate_write_and_keeps_the_data() {
        try (HostMemory mem = HostMemory.anonymous(new OldKernel(Errno.EINVAL), "old-kernel", 4 * PAGE)) {
            mem.writeLong(mem.base().checkedAdd(PAGE + 8), 77);
            mem.populate(PAGE, 3 * PAGE);
            assertEquals(3 * PAGE, mem.residentBytes(mem.hostRange()));
            assertEquals(0, mem.residentBytes(AddressRange.of(mem.base().value(), PAGE)));
            assertEquals(77, mem.readLong(mem.base().checkedAdd(PAGE + 8)));
        }
        try (HostMemory mem = HostMemory.anonymous(new OldKernel(Errno.EPERM), "denied", PAGE)) {
            NativeException e = assertThrows(NativeException.class, () -> mem.populate(0, PAGE));
            assertEquals(Errno.EPERM, e.errno());
            assertEquals(0, mem.residentBytes(mem.hostRange()));
        }
    }

    @Test
    void the_populate_fallback_gives_each_page_its_own_frame_not_the_shared_zero_page() {
        NativeRequirement.require("CAP_SYS_ADMIN for page frame numbers", noSysAdmin());
        try (HostMemory mem = HostMemory.anonymous(new OldKernel(Errno.EINVAL), "populated", 2 * PAGE)) {
            mem.populate(0, mem.size());
            long first = mem.pfn(mem.base()).orElseThrow();
            long second = mem.pfn(mem.base().checkedAdd(PAGE)).orElseThrow();
            assertTrue(first != second, "a read-only touch would map both pages to the zero page");
        }
    }

    @Test
    void a_shared_mapping_that_cannot_be_sized_closes_its_memfd() {
        List<Integer> created = new ArrayList<>();
        List<Integer> closed = new ArrayList<>();
        Posix failingTruncate = new ForwardingPosix(Posix.system()) {
            @Override
            public int memfdCreate(String name, int flags) {
                int fd = super.memfdCreate(name, flags);
                created.add(fd);
                return fd;
            }

            @Override
            public void ftruncate(int fd, long length) {
                throw new NativeException("ftruncate", Errno.EFBIG);
            }

            @Override
            public void close(int fd) {
                closed.add(fd);
                super.close(fd);
            }
        };
        NativeException e = assertThrows(NativeException.class,
                () -> HostMemory.shared(failingTruncate, "unsizable", PAGE));
        assertEquals("ftruncate", e.call());
        assertEquals(1, created.size());
        assertEquals(created, closed);
    }

    /** Reading PFNs from /proc/self/pagemap needs CAP_SYS_ADMIN (bit 21 of the effective capabilities). */
    private static Optional<String> noSysAdmin() {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
                if (line.startsWith("CapEff:")) {
                    long caps = Long.parseUnsignedLong(line.substring(7).trim(), 16);
                    return (caps & (1L << 21)) != 0 ? Optional.empty() : Optional.of("no CAP_SYS_ADMIN");
                }
            }
            return Optional.of("no CapEff line in /proc/self/status");
        } catch (IOException e) {
            return Optional.of("cannot read /proc/self/status: " + e.getMessage());
        }
    }

    @Test
    void a_touched_page_has_a_frame_number_and_an_untouched_one_has_none() {
        NativeRequirement.require("CAP_SYS_ADMIN for page frame numbers", noSysAdmin());
        try (HostMemory mem = HostMemory.anonymous("pfns", 3 * PAGE)) {
            mem.writeByte(mem.base(), (byte) 1);
            mem.writeByte(mem.base().checkedAdd(2 * PAGE), (byte) 2);
            long first = mem.pfn(mem.base()).orElseThrow();
            long third = mem.pfn(mem.base().checkedAdd(2 * PAGE + 5)).orElseThrow();
            assertTrue(first > 0 && third > 0);
            assertTrue(first != third, "two resident pages share no frame");
            assertEquals(first, mem.pfn(mem.base().checkedAdd(PAGE - 1)).orElseThrow());
            assertEquals(OptionalLong.empty(), mem.pfn(mem.base().checkedAdd(PAGE)));
            assertThrows(IndexOutOfBoundsException.class, () -> mem.pfn(mem.base().checkedAdd(3 * PAGE)));
        }
    }
}
