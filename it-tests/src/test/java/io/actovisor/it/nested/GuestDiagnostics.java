package io.actovisor.it.nested;

import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Optional;

/**
 * The kernel's view of a nested guest, on demand: what a hung test needs to be understood. QEMU gives the guest a
 * virtio-serial port named {@value #PORT} whose host end is a Unix socket in the work directory; the guest's init
 * runs a responder on it ({@link #responder()}) that, for each {@value #REQUEST} line, writes the guest's uptime and
 * load, {@code /proc/meminfo}, every thread of the command's process and its children (state, {@code wchan}, and
 * the kernel stack of each not sleeping interruptibly), every other task in the system that is not sleeping (with
 * its stack), and the kernel's list of blocked tasks ({@code echo w > /proc/sysrq-trigger}, read back with
 * {@code dmesg}), then {@value #END}. {@link #request} connects, asks and reads until that line.
 *
 * <p>A socket path longer than a Unix socket address holds leaves the guest without the port; then {@link #request}
 * says so instead of answering.
 */
public final class GuestDiagnostics {
    /** The name of the guest's virtio-serial port. */
    static final String PORT = "actovisor.diagnostics";
    /** What the host sends to ask. */
    static final String REQUEST = "diagnose";
    /** The responder's last line. */
    public static final String END = "--- end of diagnostics";
    /** The responder's first line starts with this. */
    public static final String BEGIN = "--- diagnostics of the nested guest";
    /** Longest path a Unix socket address holds (sun_path is 108 bytes with the terminating NUL). */
    private static final int MAX_SOCKET_PATH = 107;

    private GuestDiagnostics() {
    }

    /** The socket QEMU listens on for a guest working in {@code workDir}, if its path fits a socket address. */
    static Optional<Path> socket(Path workDir) {
        Path socket = workDir.toAbsolutePath().resolve("diagnostics.sock");
        return socket.toString().getBytes(StandardCharsets.UTF_8).length > MAX_SOCKET_PATH || socket.toString()
                .contains(",") ? Optional.empty() : Optional.of(socket);
    }

    /** QEMU's options for the port at {@code socket} (listening, not waiting for a client). */
    static List<String> qemuOptions(Path socket) {
        return List.of("-device", "virtio-serial-pci,id=actovisor-diag",
                "-chardev", "socket,id=actovisor-diag,path=" + socket + ",server=on,wait=off",
                "-device", "virtserialport,bus=actovisor-diag.0,chardev=actovisor-diag,name=" + PORT);
    }

    /**
     * The init's responder (busybox sh): started in the background after the command, whose pid is in
     * {@code $command}. Without the port (no socket) it does nothing.
     */
    static String responder() {
        return """
                diagnose() {
                  echo "%1$s at $(cat /proc/uptime | cut -d' ' -f1) s of uptime; load $(cat /proc/loadavg)"
                  echo "--- /proc/meminfo"
                  cat /proc/meminfo
                  echo "--- tasks (pid/tid name state wchan; kernel stack unless sleeping interruptibly): every thread of the command and its children, and every other task that is not sleeping"
                  mine=" $command $(cat /proc/$command/task/*/children 2>/dev/null) "
                  for t in /proc/[0-9]*/task/[0-9]*; do
                    p=${t#/proc/}; p=${p%%%%/*}
                    s=
                    while read -r k v rest; do [ "$k" = State: ] && { s=$v; break; }; done < $t/status 2>/dev/null
                    case "$mine" in *" $p "*) ;; *) case "$s" in S|I|"") continue ;; esac ;; esac
                    c=; w=
                    read -r c < $t/comm 2>/dev/null
                    read -r w < $t/wchan 2>/dev/null
                    echo "$p/${t##*/} $c $s $w"
                    case "$s" in S|I) ;; *) sed 's/^/    /' $t/stack 2>/dev/null ;; esac
                  done
                  echo "--- blocked tasks, from the kernel (sysrq w)"
                  echo w > /proc/sysrq-trigger
                  sleep 1
                  dmesg | awk '/sysrq: Show Blocked State/ { b = "" } { b = b $0 "\\n" } END { printf "%%s", b }'
                  echo "%2$s"
                }
                port=
                for n in /sys/class/virtio-ports/*/name; do
                  [ "$(cat $n 2>/dev/null)" = %3$s ] && { d=${n%%/name}; port=/dev/${d##*/}; }
                done
                if [ -n "$port" ]; then
                  while :; do
                    if read -r request < $port 2>/dev/null && [ "$request" = %4$s ]; then
                      diagnose > $port 2>&1
                    else
                      sleep 1
                    fi
                  done &
                fi
                """.formatted(BEGIN, END, PORT, REQUEST);
    }

    /**
     * Ask the guest behind {@code socket} for its diagnostics and read them, for at most {@code timeout}; what
     * arrived by then, or why nothing could be asked.
     */
    public static String request(Optional<Path> socket, Duration timeout) {
        if (socket.isEmpty()) {
            return "(no diagnostics: the work directory's path is too long for the guest's diagnostics socket)";
        }
        if (!Files.exists(socket.get())) {
            return "(no diagnostics: QEMU is not listening on " + socket.get() + ")";
        }
        StringBuilder text = new StringBuilder();
        long deadline = System.nanoTime() + timeout.toNanos();
        try (SocketChannel channel = SocketChannel.open(StandardProtocolFamily.UNIX)) {
            channel.connect(UnixDomainSocketAddress.of(socket.get()));
            channel.write(ByteBuffer.wrap((REQUEST + "\n").getBytes(StandardCharsets.US_ASCII)));
            channel.configureBlocking(false);
            ByteBuffer buffer = ByteBuffer.allocate(64 * 1024);
            while (System.nanoTime() - deadline < 0) {
                int n = channel.read(buffer);
                if (n < 0) {
                    break;
                }
                if (n == 0) {
                    Thread.sleep(100);
                    continue;
                }
                buffer.flip();
                text.append(StandardCharsets.UTF_8.decode(buffer));
                buffer.clear();
                if (text.indexOf(END) >= 0) {
                    return text.substring(0, text.indexOf(END) + END.length());
                }
            }
            return text + "\n(diagnostics incomplete: no " + END + " within " + timeout.toSeconds() + " s)";
        } catch (IOException e) {
            return text + "\n(diagnostics failed: " + e + ")";
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return text + "\n(diagnostics interrupted)";
        }
    }
}
