package io.actovisor.actors.vfio;

import io.actovisor.devices.iommu.DmaMapping;
import io.actovisor.devices.iommu.DmaPermissions;
import io.actovisor.devices.iommu.DmaPort;
import io.actovisor.devices.iommu.Iommu;
import io.actovisor.devices.iommu.IommuException;
import io.actovisor.devices.iommu.IommuInfo;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.HostAddress;
import java.util.List;
import java.util.Optional;
import java.util.function.Function;

/**
 * The one IOMMU context of a container, shared by the container (which opens it, mirrors the flat view into it and
 * closes it) and its {@link ContainerDmaActor} (user maps and the device data path). Backends are single-owner and
 * not thread-safe, and the two actors may run on different threads, so every call, the data path's included, holds
 * this object's monitor. After {@link #close()} every call fails with {@link IommuException.Kind#CLOSED}: a DMA
 * request that raced with the last group's detach gets an error, never a closed fd.
 */
final class GuardedIommu implements Iommu {
    private final Iommu iommu;
    private final String container;
    private boolean closed;

    GuardedIommu(Iommu iommu, String container) {
        this.iommu = iommu;
        this.container = container;
    }

    private void requireOpen() {
        if (closed) {
            throw new IommuException(IommuException.Kind.CLOSED, null, "container " + container
                    + " has no open IOMMU: its last group detached");
        }
    }

    /**
     * Run {@code work} on the backend itself while holding the monitor (backend-specific requests such as the
     * vfio-type1 kernel probes); empty when the backend is not a {@code type}.
     */
    synchronized <T extends Iommu, R> Optional<R> withBackend(Class<T> type, Function<T, R> work) {
        requireOpen();
        return type.isInstance(iommu) ? Optional.ofNullable(work.apply(type.cast(iommu))) : Optional.empty();
    }

    /** Run {@code work} (a group joining or leaving, a whole audit) while no other call runs. */
    synchronized <R> R locked(java.util.function.Supplier<R> work) {
        return work.get();
    }

    @Override
    public String backend() {
        return iommu.backend();
    }

    @Override
    public synchronized IommuInfo info() {
        requireOpen();
        return iommu.info();
    }

    @Override
    public synchronized void map(AddressRange iova, HostAddress host, DmaPermissions permissions) {
        requireOpen();
        iommu.map(iova, host, permissions);
    }

    @Override
    public synchronized List<DmaMapping> unmap(AddressRange iova) {
        requireOpen();
        return iommu.unmap(iova);
    }

    @Override
    public synchronized List<DmaMapping> mappings() {
        requireOpen();
        return iommu.mappings();
    }

    @Override
    public synchronized long pinnedBytes() {
        requireOpen();
        return iommu.pinnedBytes();
    }

    @Override
    public synchronized Optional<DmaPort> dmaPort() {
        requireOpen();
        return iommu.dmaPort().map(port -> new DmaPort() {
            @Override
            public byte[] read(long iova, int length) {
                synchronized (GuardedIommu.this) {
                    requireOpen();
                    return port.read(iova, length);
                }
            }

            @Override
            public void write(long iova, byte[] data) {
                synchronized (GuardedIommu.this) {
                    requireOpen();
                    port.write(iova, data);
                }
            }
        });
    }

    @Override
    public synchronized void close() {
        if (!closed) {
            closed = true;
            iommu.close();
        }
    }
}
