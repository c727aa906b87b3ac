package io.actovisor.cluster;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * This node's record of when each VM tree started and stopped here: one line per event,
 * {@code <epoch millis> start|stop <vm id> <node address>}, appended to {@code <data-dir>/vm-events.log}. A VM's
 * entity writes {@code start} when it spawns the VM tree and {@code stop} once the tree has stopped (its memory
 * released), so a VM's lines from all nodes show where it ran when; the partition test reads them to prove that a VM
 * never ran in two places. Each line is one {@code write} in append mode (it reaches the kernel at once and survives
 * {@code kill -9}); a failed write is logged, never thrown into the VM's entity.
 */
public final class VmEventLog implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(VmEventLog.class);

    /** The file name in a node's data directory. */
    public static final String FILE = "vm-events.log";

    private final Path file;
    private final String node;
    private final FileChannel channel;

    private VmEventLog(Path file, String node, FileChannel channel) {
        this.file = file;
        this.node = node;
        this.channel = channel;
    }

    /** Open (create, append to) {@code dataDir}/{@value #FILE} for the node at {@code node}. */
    public static VmEventLog open(Path dataDir, String node) {
        Path file = dataDir.resolve(FILE);
        try {
            Files.createDirectories(dataDir);
            return new VmEventLog(file, node, FileChannel.open(file, StandardOpenOption.CREATE,
                    StandardOpenOption.WRITE, StandardOpenOption.APPEND));
        } catch (IOException e) {
            throw new UncheckedIOException("cannot open the VM event log " + file + ": " + e.getMessage(), e);
        }
    }

    /** The VM tree of {@code id} was spawned here. */
    public void started(String id) {
        append("start", id);
    }

    /** The VM tree of {@code id} has stopped here. */
    public void stopped(String id) {
        append("stop", id);
    }

    private synchronized void append(String event, String id) {
        String line = System.currentTimeMillis() + " " + event + " " + id + " " + node + "\n";
        try {
            ByteBuffer bytes = ByteBuffer.wrap(line.getBytes(StandardCharsets.UTF_8));
            while (bytes.hasRemaining()) {
                channel.write(bytes);
            }
        } catch (IOException e) {
            LOG.warn("cannot write '{}' to the VM event log {}: {}", line.strip(), file, e.getMessage());
        }
    }

    @Override
    public synchronized void close() {
        try {
            channel.close();
        } catch (IOException e) {
            LOG.warn("cannot close the VM event log {}: {}", file, e.getMessage());
        }
    }
}
