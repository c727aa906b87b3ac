package io.actovisor.testkit;

import io.actovisor.actors.vm.VmTopology;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.sys.ProcessResources;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;

/**
 * Invariant 6 (nothing leaks) for a test: a snapshot of the process's native resources before, compared after. A
 * leak is a native fd (KVM, VFIO, io_uring, eventfd, memfd) opened and not closed, more pinned memory
 * ({@code VmPin} of {@code /proc/self/status}) than before, a new memfd mapping, host memory given to
 * {@link #track} that is still open (with its lines of {@code /proc/self/maps}), or a thread still running a
 * guest ({@code KVM_RUN}). VMs stop asynchronously, so {@link #awaitNoLeaks} polls until the process is clean or
 * the grace period ends, and only then reports.
 */
public final class LeakCheck {
    /** How long teardown may take after a test before a remaining resource counts as leaked. */
    public static final Duration GRACE = Duration.ofSeconds(10);

    private final ProcessResources before;
    private final long pinnedKibBefore;
    private final List<HostMemory> tracked = new CopyOnWriteArrayList<>();

    private LeakCheck(ProcessResources before, long pinnedKibBefore) {
        this.before = before;
        this.pinnedKibBefore = pinnedKibBefore;
    }

    /** Snapshot the process now. */
    public static LeakCheck start() {
        return new LeakCheck(ProcessResources.snapshot(), Math.max(0, ProcessResources.statusKib("VmPin")));
    }

    /** Check that {@code memory} is closed (unmapped) by the end of the test. */
    public void track(HostMemory memory) {
        tracked.add(memory);
    }

    /** Check that every host memory block of {@code topology} is closed by the end of the test. */
    public VmTopology track(VmTopology topology) {
        topology.memory().forEach(this::track);
        return topology;
    }

    /** The leaks now, each a sentence naming the resource; empty when the process is as clean as before. */
    public List<String> leaks() {
        List<String> leaks = new ArrayList<>();
        ProcessResources now = ProcessResources.snapshot();
        now.nativeFdsOpenedSince(before).forEach((fd, target) -> leaks.add("fd " + fd + " (" + target
                + ") is still open"));
        long pinned = ProcessResources.statusKib("VmPin");
        if (pinned > pinnedKibBefore) {
            leaks.add((pinned - pinnedKibBefore) + " KiB more memory is pinned (VmPin) than before the test");
        }
        List<String> memfds = new ArrayList<>(now.mappingsMentioning("/memfd:"));
        memfds.removeAll(before.mappingsMentioning("/memfd:"));
        memfds.forEach(line -> leaks.add("memfd mapping still present: " + line));
        for (HostMemory memory : tracked) {
            if (!memory.isClosed()) {
                leaks.add("host memory " + memory.name() + " is still open; its mappings: "
                        + now.mappingsOverlapping(memory.base().value(), memory.size()));
            }
        }
        for (Map.Entry<Thread, StackTraceElement[]> e : Thread.getAllStackTraces().entrySet()) {
            if (Arrays.stream(e.getValue()).anyMatch(f -> f.getClassName().equals("io.actovisor.kernel.kvm.KvmVcpu")
                    && f.getMethodName().equals("run"))) {
                leaks.add("thread " + e.getKey().getName() + " still runs a guest (KVM_RUN)");
            }
        }
        return leaks;
    }

    /** Wait up to {@link #GRACE} for the process to be clean; the leaks that remain. */
    public List<String> awaitNoLeaks() {
        long deadline = System.nanoTime() + GRACE.toNanos();
        List<String> leaks = leaks();
        while (!leaks.isEmpty() && System.nanoTime() < deadline) {
            try {
                Thread.sleep(50);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                break;
            }
            leaks = leaks();
        }
        return leaks;
    }
}
