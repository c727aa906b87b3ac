package io.actovisor.benchmarks;

import io.actovisor.devices.iommu.DmaPermissions;
import io.actovisor.devices.iommu.pinned.PinnedIommu;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.HostMemory;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

/** Pinning 1 GiB of populated memory through the pinned backend (map), and unpinning it (unmap). */
@State(Scope.Benchmark)
@Fork(1)
@Warmup(iterations = 3)
@Measurement(iterations = 10)
@BenchmarkMode(Mode.SingleShotTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
public class PinningBenchmark {
    static final long SIZE = 1L << 30;
    private static final AddressRange IOVA = AddressRange.of(0, SIZE);

    private HostMemory memory;
    private PinnedIommu iommu;

    @Setup(Level.Trial)
    public void setUp() {
        memory = HostMemory.anonymous("bench-pin", SIZE);
        memory.populate(0, memory.size());
        iommu = PinnedIommu.open();
    }

    @TearDown(Level.Invocation)
    public void unpin() {
        if (!iommu.mappings().isEmpty()) {
            iommu.unmap(IOVA);
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        iommu.close();
        memory.close();
    }

    @Benchmark
    public long map1GiB() {
        iommu.map(IOVA, memory.base(), DmaPermissions.READ_WRITE);
        return iommu.pinnedBytes();
    }
}
