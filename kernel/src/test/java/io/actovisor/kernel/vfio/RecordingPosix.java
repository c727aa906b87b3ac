package io.actovisor.kernel.vfio;

import io.actovisor.memory.sys.Errno;
import io.actovisor.memory.sys.Ioctl;
import io.actovisor.memory.sys.NativeBuffer;
import io.actovisor.memory.sys.NativeException;
import io.actovisor.memory.sys.Posix;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.TreeMap;
import java.util.TreeSet;

/**
 * A test double for {@link Posix} that records every call with its arguments and answers from a script. It is a
 * recorder, not a kernel: ioctls return 0 unless a handler says otherwise, and handlers write replies into the
 * caller's buffer through {@link NativeBuffer#view}, exactly where the kernel would.
 *
 * <p>For ioctls whose argument is a pointer, the bytes the caller passed are copied at call time (the caller frees
 * its buffer right after), as {@link #argumentKind(String, ArgumentKind) declared} per ioctl name.
 */
public final class RecordingPosix implements Posix {
    /** How to read an ioctl's argument. */
    public enum ArgumentKind {
        /** The argument is a plain value. */
        VALUE,
        /** A pointer to a 32-bit integer (VFIO_GROUP_SET_CONTAINER passes the container fd this way). */
        INT_POINTER,
        /** A pointer to a structure whose first u32 is argsz: argsz bytes are captured. */
        ARGSZ_STRUCT,
        /** A pointer to a NUL-terminated string. */
        C_STRING
    }

    /** One recorded call. */
    public sealed interface Call permits Open, Close, IoctlCall, Pread, Pwrite, Mmap, Munmap, Eventfd, Read {
    }

    /** eventfd(2). */
    public record Eventfd(int initval, int flags, int result) implements Call {
    }

    /** read(2). */
    public record Read(int fd, long count) implements Call {
    }

    /** open(2). */
    public record Open(String path, int flags, int result) implements Call {
    }

    /** close(2). */
    public record Close(int fd) implements Call {
    }

    /**
     * ioctl(2).
     *
     * @param in the bytes the caller passed (per {@link ArgumentKind}), copied at call time; empty for values
     */
    public record IoctlCall(int fd, Ioctl request, long arg, byte[] in) implements Call {
        public String name() {
            return request.name();
        }

        public int inInt(int offset) {
            return ByteBuffer.wrap(in).order(ByteOrder.LITTLE_ENDIAN).getInt(offset);
        }

        public long inLong(int offset) {
            return ByteBuffer.wrap(in).order(ByteOrder.LITTLE_ENDIAN).getLong(offset);
        }

        /** The argument read as a C string (for {@link ArgumentKind#C_STRING}). */
        public String inString() {
            return new String(in, StandardCharsets.UTF_8);
        }

        @Override
        public String toString() {
            return "ioctl(" + fd + ", " + request.name() + ", " + (in.length == 0 ? Long.toString(arg)
                    : in.length + " bytes") + ")";
        }
    }

    /** pread(2). */
    public record Pread(int fd, long count, long offset) implements Call {
    }

    /** pwrite(2), with the bytes written. */
    public record Pwrite(int fd, long offset, byte[] data) implements Call {
    }

    /** mmap(2). */
    public record Mmap(long length, int prot, int flags, int fd, long offset, long result) implements Call {
    }

    /** munmap(2). */
    public record Munmap(long addr, long length) implements Call {
    }

    /** A scripted ioctl: may write into {@code argument} (a view of the caller's buffer) and returns the result. */
    @FunctionalInterface
    public interface Handler {
        long handle(IoctlCall call, Optional<NativeBuffer> argument);
    }

    private final List<Call> calls = new ArrayList<>();
    private final Map<String, Integer> openErrno = new HashMap<>();
    private final Map<String, Boolean> files = new HashMap<>();
    private final Map<String, ArgumentKind> kinds = new HashMap<>();
    private final Map<String, Handler> handlers = new HashMap<>();
    private final Map<String, Deque<Handler>> onceHandlers = new HashMap<>();
    private final Map<Integer, String> openFds = new TreeMap<>();
    private final Map<Integer, TreeMap<Long, Byte>> fileContents = new HashMap<>();
    private final Map<Long, NativeBuffer> mappings = new HashMap<>();
    private final Map<Integer, Long> eventCounts = new HashMap<>();
    private int nextFd = 100;

    // --- script ------------------------------------------------------------------------------------------

    /** {@code path} opens successfully. */
    public RecordingPosix file(String path) {
        files.put(path, true);
        return this;
    }

    /** Opening {@code path} fails with {@code errno}. */
    public RecordingPosix openFails(String path, int errno) {
        openErrno.put(path, errno);
        return this;
    }

    public RecordingPosix argumentKind(String ioctl, ArgumentKind kind) {
        kinds.put(ioctl, kind);
        return this;
    }

    /** Answer every {@code ioctl} call with {@code handler} (replacing an earlier one). */
    public RecordingPosix on(String ioctl, Handler handler) {
        handlers.put(ioctl, handler);
        return this;
    }

    /** Answer the next {@code ioctl} call with {@code handler}, before any persistent handler. */
    public RecordingPosix once(String ioctl, Handler handler) {
        onceHandlers.computeIfAbsent(ioctl, k -> new ArrayDeque<>()).add(handler);
        return this;
    }

    /** Every {@code ioctl} call fails with {@code errno}. */
    public RecordingPosix fail(String ioctl, int errno) {
        return on(ioctl, (call, arg) -> {
            throw new NativeException("ioctl(" + call.name() + ")", errno);
        });
    }

    /** The next {@code ioctl} call fails with {@code errno}. */
    public RecordingPosix failOnce(String ioctl, int errno) {
        return once(ioctl, (call, arg) -> {
            throw new NativeException("ioctl(" + call.name() + ")", errno);
        });
    }

    /** Allocate an fd the double counts as open (device fds handed out by an ioctl). */
    public int newFd(String target) {
        int fd = nextFd++;
        openFds.put(fd, target);
        return fd;
    }

    /** Preset bytes of the file behind {@code fd} (a device fd's regions). */
    public void poke(int fd, long offset, byte[] data) {
        TreeMap<Long, Byte> contents = fileContents.computeIfAbsent(fd, k -> new TreeMap<>());
        for (int i = 0; i < data.length; i++) {
            contents.put(offset + i, data[i]);
        }
    }

    /** Bytes of the file behind {@code fd}; unwritten bytes read as 0. */
    public byte[] peek(int fd, long offset, int length) {
        TreeMap<Long, Byte> contents = fileContents.getOrDefault(fd, new TreeMap<>());
        byte[] out = new byte[length];
        for (int i = 0; i < length; i++) {
            out[i] = contents.getOrDefault(offset + i, (byte) 0);
        }
        return out;
    }

    // --- inspection --------------------------------------------------------------------------------------

    public List<Call> calls() {
        return List.copyOf(calls);
    }

    public List<IoctlCall> ioctls() {
        return calls.stream().filter(IoctlCall.class::isInstance).map(IoctlCall.class::cast).toList();
    }

    public List<IoctlCall> ioctls(String name) {
        return ioctls().stream().filter(c -> c.name().equals(name)).toList();
    }

    /** A compact trace: "open /dev/vfio/vfio", "VFIO_GET_API_VERSION", "close 100", ... */
    public List<String> trace() {
        List<String> out = new ArrayList<>();
        for (Call call : calls) {
            out.add(describe(call));
        }
        return out;
    }

    private static String describe(Call call) {
        if (call instanceof Open o) {
            return "open " + o.path();
        } else if (call instanceof Close c) {
            return "close " + c.fd();
        } else if (call instanceof IoctlCall i) {
            return i.name();
        } else if (call instanceof Pread p) {
            return "pread " + p.fd() + " @0x" + Long.toHexString(p.offset());
        } else if (call instanceof Pwrite p) {
            return "pwrite " + p.fd() + " @0x" + Long.toHexString(p.offset());
        } else if (call instanceof Mmap m) {
            return "mmap " + m.fd() + " @0x" + Long.toHexString(m.offset());
        } else if (call instanceof Eventfd e) {
            return "eventfd " + e.result();
        } else if (call instanceof Read r) {
            return "read " + r.fd();
        }
        return "munmap 0x" + Long.toHexString(((Munmap) call).addr());
    }

    /** The fds opened through this double and not closed. */
    public Map<Integer, String> openFds() {
        return Map.copyOf(openFds);
    }

    /** Mappings made through mmap and not unmapped. */
    public TreeSet<Long> liveMappings() {
        return new TreeSet<>(mappings.keySet());
    }

    public void clearCalls() {
        calls.clear();
    }

    // --- Posix -------------------------------------------------------------------------------------------

    @Override
    public int open(String path, int flags) {
        Integer errno = openErrno.get(path);
        if (errno == null && !files.containsKey(path)) {
            errno = Errno.ENOENT;
        }
        if (errno != null) {
            calls.add(new Open(path, flags, -errno));
            throw new NativeException("open(" + path + ")", errno);
        }
        int fd = newFd(path);
        calls.add(new Open(path, flags, fd));
        return fd;
    }

    @Override
    public void close(int fd) {
        calls.add(new Close(fd));
        if (openFds.remove(fd) == null) {
            throw new NativeException("close(" + fd + ")", Errno.EBADF);
        }
    }

    @Override
    public long ioctl(int fd, Ioctl request, long arg) {
        if (!openFds.containsKey(fd)) {
            calls.add(new IoctlCall(fd, request, arg, new byte[0]));
            throw new NativeException("ioctl(" + request.name() + ")", Errno.EBADF);
        }
        ArgumentKind kind = kinds.getOrDefault(request.name(), ArgumentKind.VALUE);
        NativeBuffer view = switch (kind) {
            case VALUE -> null;
            case INT_POINTER -> NativeBuffer.view(arg, Integer.BYTES);
            case ARGSZ_STRUCT -> NativeBuffer.view(arg, NativeBuffer.view(arg, Integer.BYTES).getInt(0));
            case C_STRING -> NativeBuffer.view(arg, cStringLength(arg));
        };
        IoctlCall call = new IoctlCall(fd, request, arg, view == null ? new byte[0] : view.getBytes(0, view.size()));
        calls.add(call);
        Deque<Handler> once = onceHandlers.get(request.name());
        Handler handler = once != null && !once.isEmpty() ? once.poll() : handlers.get(request.name());
        return handler == null ? 0 : handler.handle(call, Optional.ofNullable(view));
    }

    private static long cStringLength(long address) {
        NativeBuffer probe = NativeBuffer.view(address, 4096);
        for (int i = 0; i < 4096; i++) {
            if (probe.getByte(i) == 0) {
                return i;
            }
        }
        throw new IllegalArgumentException("no NUL within 4096 bytes of 0x" + Long.toHexString(address));
    }

    @Override
    public long pread(int fd, long buf, long count, long offset) {
        calls.add(new Pread(fd, count, offset));
        requireOpen(fd, "pread");
        NativeBuffer.view(buf, count).putBytes(0, peek(fd, offset, (int) count));
        return count;
    }

    @Override
    public long pwrite(int fd, long buf, long count, long offset) {
        byte[] data = NativeBuffer.view(buf, count).getBytes(0, (int) count);
        calls.add(new Pwrite(fd, offset, data));
        requireOpen(fd, "pwrite");
        poke(fd, offset, data);
        return count;
    }

    @Override
    public long mmap(long addr, long length, int prot, int flags, int fd, long offset) {
        requireOpen(fd, "mmap");
        NativeBuffer memory = NativeBuffer.allocate((int) length);
        mappings.put(memory.address(), memory);
        calls.add(new Mmap(length, prot, flags, fd, offset, memory.address()));
        return memory.address();
    }

    @Override
    public void munmap(long addr, long length) {
        calls.add(new Munmap(addr, length));
        NativeBuffer memory = mappings.remove(addr);
        if (memory == null) {
            throw new NativeException("munmap(0x" + Long.toHexString(addr) + ")", Errno.EINVAL);
        }
        memory.close();
    }

    private void requireOpen(int fd, String call) {
        if (!openFds.containsKey(fd)) {
            throw new NativeException(call + "(" + fd + ")", Errno.EBADF);
        }
    }

    @Override
    public long pageSize() {
        return 4096;
    }

    @Override
    public Optional<String> fdTarget(int fd) {
        return Optional.ofNullable(openFds.get(fd));
    }

    private static UnsupportedOperationException unscripted(String call) {
        return new UnsupportedOperationException(call + " is not part of the VFIO script of RecordingPosix");
    }

    @Override
    public void madvise(long addr, long length, int advice) {
        throw unscripted("madvise");
    }

    @Override
    public void mincore(long addr, long length, long vec) {
        throw unscripted("mincore");
    }

    @Override
    public int memfdCreate(String name, int flags) {
        throw unscripted("memfd_create");
    }

    @Override
    public void ftruncate(int fd, long length) {
        throw unscripted("ftruncate");
    }

    @Override
    public void fallocate(int fd, int mode, long offset, long length) {
        throw unscripted("fallocate");
    }

    /** Make the next read of eventfd {@code fd} return {@code count} (added to what is pending). */
    public void signal(int fd, long count) {
        eventCounts.merge(fd, count, Long::sum);
    }

    /** Reads an eventfd's pending count, as eventfd(2) does; EAGAIN when nothing is pending (never blocks). */
    @Override
    public long read(int fd, long buf, long count) {
        calls.add(new Read(fd, count));
        requireOpen(fd, "read");
        Long pending = eventCounts.remove(fd);
        if (pending == null) {
            throw new NativeException("read(" + fd + ")", Errno.EAGAIN);
        }
        NativeBuffer.view(buf, count).putLong(0, pending);
        return Long.BYTES;
    }

    @Override
    public long write(int fd, long buf, long count) {
        throw unscripted("write");
    }

    @Override
    public int eventfd(int initval, int flags) {
        int fd = newFd("anon_inode:[eventfd]");
        calls.add(new Eventfd(initval, flags, fd));
        return fd;
    }

    @Override
    public long syscall(String name, long number, long a1, long a2, long a3, long a4, long a5, long a6) {
        throw unscripted(name);
    }

    @Override
    public int getpid() {
        throw unscripted("getpid");
    }

    @Override
    public int gettid() {
        throw unscripted("gettid");
    }

    @Override
    public void tgkill(int tgid, int tid, int signal) {
        throw unscripted("tgkill");
    }

    @Override
    public void installNoopSignalHandler(int signal) {
        throw unscripted("sigaction");
    }
}
