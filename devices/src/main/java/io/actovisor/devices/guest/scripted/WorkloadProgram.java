package io.actovisor.devices.guest.scripted;

import io.actovisor.devices.dma.DmaEngine;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.GuestAddress;
import io.actovisor.memory.GuestMemory;
import io.actovisor.memory.RegionKind;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;

/**
 * The scripted guest's default program: what the firmware's {@code workload} does, from the driver side in Java.
 * Each round it follows the balloon's target by giving up (or taking back) frames in the order of
 * {@link BalloonablePages}: whole 2 MiB blocks of its free RAM first (the RAM above the work area), the work area
 * last; it writes a round-dependent pattern over the work-area pages it keeps, checksums them by CPU (reading guest RAM) and by the
 * DMA engine (through the VFIO container's IOMMU), prints {@code round N: ... match} (or {@code MISMATCH} and the
 * pages that differ) on the console, and answers the balloon's statistics requests. With DEFLATE_ON_OOM
 * negotiated it keeps {@link #RESERVE_PAGES} pages of its work area whatever the target, as a guest's OOM path
 * deflates the balloon instead of failing; without it, it follows the target up to all its free RAM and the whole
 * work area. With free page reporting negotiated (and not switched off) it reports the whole free blocks the balloon
 * does not hold, once when they become free.
 */
public final class WorkloadProgram implements GuestProgram {
    /** Pages the workload keeps under memory pressure when DEFLATE_ON_OOM was negotiated. */
    public static final long RESERVE_PAGES = 16;
    /** Pages whose CPU and DMA checksums are compared one by one after a mismatch, at most. */
    private static final int MAX_DIFFER_LINES = 16;

    private final Duration interval;
    private final boolean reportFreePages;
    private Optional<BalloonDriver> balloon = Optional.empty();
    private Optional<DmaEngineDriver> dma = Optional.empty();
    private BalloonablePages plan;
    private long held;
    /** The lowest block (in {@link BalloonablePages} order) reported and free since; blocks from it on are reported. */
    private long reportedFrom;

    /** A workload sleeping {@code interval} between rounds, reporting free pages when the device offers it. */
    public WorkloadProgram(Duration interval) {
        this(interval, true);
    }

    /** A workload sleeping {@code interval} between rounds; {@code reportFreePages} switches free page reporting. */
    public WorkloadProgram(Duration interval, boolean reportFreePages) {
        if (interval.isNegative()) {
            throw new IllegalArgumentException("the round interval must not be negative, was " + interval);
        }
        this.interval = interval;
        this.reportFreePages = reportFreePages;
    }

    @Override
    public String name() {
        return "workload";
    }

    /** Pages currently given to the balloon. */
    public long heldPages() {
        return held;
    }

    /** Pages of the work area currently given to the balloon. */
    public long heldWorkPages() {
        return plan == null ? 0 : plan.workPagesHeld(held);
    }

    /** The end of the guest RAM that runs on from guest-physical 0 through the work area. */
    private static long ramEnd(GuestMachine machine) {
        List<AddressRange> ram = machine.memory().view().sections().stream()
                .filter(s -> s.kind() == RegionKind.RAM).map(s -> s.range())
                .sorted(java.util.Comparator.comparingLong(AddressRange::base)).toList();
        long end = 0;
        for (AddressRange r : ram) {
            if (r.base() > end) {
                break;
            }
            end = Math.max(end, r.base() + r.size());
        }
        return end;
    }

    @Override
    public CompletionStage<Void> boot(GuestMachine machine) {
        machine.console("hello from guest");
        plan = BalloonablePages.of(machine.layout(), ramEnd(machine));
        reportedFrom = plan.blocks();
        CompletionStage<Void> dmaProbe = machine.device("dma").map(bus -> {
            DmaEngineDriver driver = new DmaEngineDriver(bus);
            return driver.present().thenAccept(present -> {
                if (present) {
                    dma = Optional.of(driver);
                } else {
                    machine.console("no DMA engine at device 'dma'");
                }
            });
        }).orElse(CompletableFuture.completedFuture(null));
        return dmaProbe.thenCompose(v -> machine.device("balloon").map(bus -> {
            BalloonDriver driver = new BalloonDriver(machine.memoryView(), bus, 0);
            return driver.start().thenAccept(started -> {
                balloon = Optional.of(driver);
                machine.console("balloon: ready (stats " + (driver.hasStatistics() ? "on" : "off") + ")");
                machine.console("balloon: " + plan.count() + " pages balloonable (" + plan.blocks() + " free blocks), "
                        + "tells host " + (driver.tellsHost() ? "yes" : "no") + ", reporting "
                        + (driver.hasReporting() && reportFreePages ? "on" : "off"));
            });
        }).orElse(CompletableFuture.completedFuture(null)));
    }

    @Override
    public CompletionStage<Optional<Duration>> round(GuestMachine machine, long round) {
        return followTarget(machine).thenCompose(v -> reportFree(machine)).thenCompose(v -> checksumRound(machine, round))
                .thenCompose(v -> answerStatistics(machine)).thenApply(v -> Optional.of(interval));
    }

    private CompletionStage<Void> followTarget(GuestMachine machine) {
        if (balloon.isEmpty()) {
            return CompletableFuture.completedFuture(null);
        }
        BalloonDriver driver = balloon.get();
        long pages = plan.count();
        return driver.target().thenCompose(requested -> {
            long target = Math.min(requested, pages);
            if (driver.deflateOnOom() && target > pages - RESERVE_PAGES) {
                long kept = Math.max(0, pages - RESERVE_PAGES);
                if (held != kept) {
                    machine.console("balloon: target " + requested + " pages leaves no memory; deflate-on-oom "
                            + "keeps the balloon at " + kept);
                }
                target = kept;
            }
            long now = target;
            CompletionStage<Void> change;
            if (now > held) {
                change = driver.inflate(plan.frames(held, now)).thenRun(() -> machine.console(
                        "balloon: inflated " + (now - held) + " pages (now " + now + ")"));
            } else if (now < held) {
                // The most recently inflated frames come back first.
                change = driver.deflate(plan.frames(now, held)).thenRun(() -> machine.console(
                        "balloon: deflated " + (held - now) + " pages (now " + now + ")"));
            } else {
                change = CompletableFuture.completedFuture(null);
            }
            return change.thenCompose(v -> {
                held = now;
                return driver.setActual(now);
            });
        });
    }

    /** Report the whole free blocks that became free since the last report (or were never reported). */
    private CompletionStage<Void> reportFree(GuestMachine machine) {
        if (balloon.isEmpty() || !reportFreePages || !balloon.get().hasReporting()) {
            return CompletableFuture.completedFuture(null);
        }
        long first = plan.firstFreeBlock(held);
        if (first >= reportedFrom) {
            reportedFrom = Math.max(reportedFrom, first);
            return CompletableFuture.completedFuture(null);
        }
        List<AddressRange> chunks = plan.freeBlocks(held, reportedFrom);
        reportedFrom = first;
        return balloon.get().reportFree(chunks).thenRun(() -> machine.console("balloon: reported " + chunks.size()
                + " free blocks"));
    }

    private CompletionStage<Void> checksumRound(GuestMachine machine, long round) {
        GuestLayout layout = machine.layout();
        GuestMemory memory = machine.memory();
        long pages = layout.workPages();
        long workHeld = heldWorkPages();
        long first = layout.workBase() + workHeld * GuestLayout.PAGE;
        int bytes = (int) ((pages - workHeld) * GuestLayout.PAGE);
        ByteBuffer pattern = ByteBuffer.allocate(bytes).order(ByteOrder.LITTLE_ENDIAN);
        for (long i = 0; i < bytes / 8; i++) {
            pattern.putLong((i * 0x9e3779b97f4a7c15L) ^ (round << 32));
        }
        if (bytes > 0) {
            memory.write(new GuestAddress(first), pattern.array());
        }
        long cpu = bytes > 0 ? DmaEngine.checksum(memory.read(new GuestAddress(first), bytes))
                : DmaEngine.checksum(new byte[0]);
        String head = "round " + round + ": pages " + (pages - workHeld) + " balloon " + held + " cpu " + hex(cpu);
        if (dma.isEmpty() || bytes == 0) {
            machine.console(head);
            return CompletableFuture.completedFuture(null);
        }
        return dma.get().checksum(first, bytes).thenCompose(t -> {
            if (!t.ok()) {
                machine.console("round " + round + ": cpu " + hex(cpu) + " dma error " + t.value());
                return CompletableFuture.completedFuture(null);
            }
            if (t.value() == cpu) {
                machine.console(head + " dma " + hex(t.value()) + " match");
                return CompletableFuture.completedFuture(null);
            }
            machine.console(head + " dma " + hex(t.value()) + " MISMATCH");
            return comparePages(machine, round, first, pages - workHeld, 0, 0);
        });
    }

    /** Compare page {@code index} onwards by CPU and DMA; name the first pages that differ, then count them. */
    private CompletionStage<Void> comparePages(GuestMachine machine, long round, long first, long count, long index,
            long differ) {
        if (index == count) {
            machine.console("round " + round + ": " + differ + " pages differ");
            return CompletableFuture.completedFuture(null);
        }
        long at = first + index * GuestLayout.PAGE;
        long mine = DmaEngine.checksum(machine.memory().read(new GuestAddress(at), (int) GuestLayout.PAGE));
        return dma.get().checksum(at, GuestLayout.PAGE).thenCompose(t -> {
            boolean differs = !t.ok() || t.value() != mine;
            if (differs && differ < MAX_DIFFER_LINES) {
                machine.console("round " + round + ": page 0x" + Long.toHexString(at) + " differs: cpu " + hex(mine)
                        + " dma " + hex(t.value()));
            }
            return comparePages(machine, round, first, count, index + 1, differs ? differ + 1 : differ);
        });
    }

    private CompletionStage<Void> answerStatistics(GuestMachine machine) {
        if (balloon.isEmpty() || !balloon.get().statisticsRequested()) {
            return CompletableFuture.completedFuture(null);
        }
        long total = machine.memory().view().sections().stream().filter(s -> s.kind() == RegionKind.RAM)
                .mapToLong(s -> s.range().size()).sum();
        long used = (machine.layout().workPages() - heldWorkPages()) * GuestLayout.PAGE + machine.layout().workBase();
        return balloon.get().reportStatistics(total, Math.max(0, total - used - held * GuestLayout.PAGE));
    }

    private static String hex(long value) {
        return String.format("%016x", value);
    }
}
