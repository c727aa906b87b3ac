package io.actovisor.testkit.fault;

import io.actovisor.actors.vfio.IommuBackend;
import io.actovisor.devices.iommu.DmaMapping;
import io.actovisor.devices.iommu.DmaPermissions;
import io.actovisor.devices.iommu.DmaPort;
import io.actovisor.devices.iommu.Iommu;
import io.actovisor.devices.iommu.IommuException;
import io.actovisor.devices.iommu.IommuInfo;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.HostAddress;
import io.actovisor.memory.sys.NativeException;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * An {@link IommuBackend} whose contexts forward to another backend's, except where an {@link IommuFault} says
 * the nth map, unmap or pin fails with an errno (as the kernel would refuse it: the container reports the error
 * to its committer) or stalls. Operations are counted over every context the backend opens, from its creation.
 */
public final class FaultyIommu implements IommuBackend {
    private final IommuBackend inner;
    private final List<IommuFault> faults;
    private final Map<IommuFault.Operation, AtomicInteger> counts = new EnumMap<>(IommuFault.Operation.class);
    private final List<String> injected = new CopyOnWriteArrayList<>();

    private FaultyIommu(IommuBackend inner, List<IommuFault> faults) {
        this.inner = inner;
        this.faults = List.copyOf(faults);
        for (IommuFault.Operation op : IommuFault.Operation.values()) {
            counts.put(op, new AtomicInteger());
        }
    }

    /** {@code inner} with {@code faults} injected. */
    public static FaultyIommu wrap(IommuBackend inner, IommuFault... faults) {
        return new FaultyIommu(inner, List.of(faults));
    }

    /** The faults that fired so far, as sentences. */
    public List<String> injected() {
        return List.copyOf(injected);
    }

    @Override
    public String name() {
        return inner.name();
    }

    @Override
    public Context open(String groupId) {
        Context context = inner.open(groupId);
        Faulty faulty = new Faulty(context.iommu());
        return new Context() {
            @Override
            public Iommu iommu() {
                return faulty;
            }

            @Override
            public void attach(String group) {
                context.attach(group);
            }

            @Override
            public void detach(String group) {
                context.detach(group);
            }
        };
    }

    /** Count {@code operations}' calls and apply the fault scheduled at this count, if any. */
    private void before(AddressRange iova, IommuFault.Operation... operations) {
        for (IommuFault.Operation op : operations) {
            int n = counts.get(op).incrementAndGet();
            for (IommuFault fault : faults) {
                if (fault.operation() == op && fault.nth() == n) {
                    fire(fault, iova);
                }
            }
        }
    }

    private void fire(IommuFault fault, AddressRange iova) {
        injected.add(fault + " at " + iova);
        if (fault.stall().isPresent()) {
            try {
                Thread.sleep(fault.stall().get().toMillis());
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            return;
        }
        int errno = fault.errno().orElseThrow();
        switch (fault.operation()) {
            case PIN -> throw new IommuException(IommuException.Kind.PIN_FAILED, iova, "pinning " + iova
                    + " failed (injected fault)", new NativeException("pin_user_pages", errno));
            case MAP -> throw new IommuException(IommuException.Kind.NATIVE, iova, "mapping " + iova + " failed: "
                    + new NativeException("ioctl(VFIO_IOMMU_MAP_DMA)", errno).getMessage() + " (injected fault)");
            case UNMAP -> throw new IommuException(IommuException.Kind.NATIVE, iova, "unmapping " + iova
                    + " failed: " + new NativeException("ioctl(VFIO_IOMMU_UNMAP_DMA)", errno).getMessage()
                    + " (injected fault)");
            default -> throw new IllegalStateException("unknown operation " + fault.operation());
        }
    }

    private final class Faulty implements Iommu {
        private final Iommu delegate;

        Faulty(Iommu delegate) {
            this.delegate = delegate;
        }

        @Override
        public String backend() {
            return delegate.backend();
        }

        @Override
        public IommuInfo info() {
            return delegate.info();
        }

        @Override
        public void map(AddressRange iova, HostAddress host, DmaPermissions permissions) {
            before(iova, IommuFault.Operation.PIN, IommuFault.Operation.MAP);
            delegate.map(iova, host, permissions);
        }

        @Override
        public List<DmaMapping> unmap(AddressRange iova) {
            before(iova, IommuFault.Operation.UNMAP);
            return delegate.unmap(iova);
        }

        @Override
        public List<DmaMapping> mappings() {
            return delegate.mappings();
        }

        @Override
        public long pinnedBytes() {
            return delegate.pinnedBytes();
        }

        @Override
        public Optional<DmaPort> dmaPort() {
            return delegate.dmaPort();
        }

        @Override
        public void close() {
            delegate.close();
        }

        @Override
        public String toString() {
            return "faulty " + delegate;
        }
    }
}
