package io.actovisor.actors.testing;

import io.actovisor.devices.iommu.DmaMapping;
import io.actovisor.devices.iommu.DmaPermissions;
import io.actovisor.devices.iommu.Iommu;
import io.actovisor.devices.iommu.IommuInfo;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.HostAddress;
import io.actovisor.memory.sys.Mman;
import io.actovisor.memory.sys.Posix;
import io.actovisor.memory.sys.ForwardingPosix;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.Supplier;

/**
 * Invariant 1 checked at the moment it could break: IOMMUs wrapped by {@link #watch} record which host ranges they
 * hold pinned, and the {@link #posix()} given to host memory records every discard ({@code MADV_DONTNEED}, hole
 * punch) that touches a pinned range as a violation.
 */
public final class PinWatch {
    private final Map<Object, List<AddressRange>> pinnedByIommu = new ConcurrentHashMap<>();
    /** The groups attached to each watched IOMMU, as its container reported them through the backend. */
    private final Map<Object, java.util.Set<String>> groupsByIommu = new ConcurrentHashMap<>();
    private final java.util.function.Predicate<String> compatible;

    /** Every group counts as pinning (not balloon-compatible). */
    public PinWatch() {
        this(group -> false);
    }

    /**
     * Pins of an IOMMU count only while it has a group that is not balloon-compatible: a compatible device pins on
     * demand, so its container's mappings alone do not forbid discards.
     */
    public PinWatch(java.util.function.Predicate<String> compatible) {
        this.compatible = compatible;
    }
    private final List<String> violations = new CopyOnWriteArrayList<>();
    private final List<AddressRange> discards = new CopyOnWriteArrayList<>();

    /** A Posix that forwards to the real one and checks each discard against the pins. */
    public Posix posix() {
        return new ForwardingPosix(Posix.system()) {
            @Override
            public void madvise(long addr, long length, int advice) {
                if (advice == Mman.MADV_DONTNEED || advice == Mman.MADV_REMOVE) {
                    checkDiscard(AddressRange.of(addr, length));
                }
                super.madvise(addr, length, advice);
            }
        };
    }

    private void checkDiscard(AddressRange host) {
        discards.add(host);
        pinnedByIommu.forEach((iommu, ranges) -> {
            java.util.Set<String> groups = groupsByIommu.getOrDefault(iommu, java.util.Set.of());
            if (groups.stream().allMatch(compatible)) {
                return;
            }
            for (AddressRange pinned : ranges) {
                if (pinned.overlaps(host)) {
                    violations.add("discard of host " + host + " while " + pinned + " is pinned by " + iommu);
                }
            }
        });
    }

    /** A backend whose IOMMUs, opened by {@code open}, are watched: their pins and groups are known. */
    public io.actovisor.actors.vfio.IommuBackend backend(String name, Supplier<? extends Iommu> open) {
        return new io.actovisor.actors.vfio.IommuBackend() {
            @Override
            public String name() {
                return name;
            }

            @Override
            public Context open(String groupId) {
                Watched watched = new Watched(open.get());
                groupsByIommu.get(watched).add(groupId);
                return new Context() {
                    @Override
                    public Iommu iommu() {
                        return watched;
                    }

                    @Override
                    public void attach(String group) {
                        groupsByIommu.get(watched).add(group);
                    }

                    @Override
                    public void detach(String group) {
                        groupsByIommu.get(watched).remove(group);
                    }
                };
            }
        };
    }

    public List<String> violations() {
        return List.copyOf(violations);
    }

    public List<AddressRange> discards() {
        return List.copyOf(discards);
    }

    /** Host bytes pinned by every watched IOMMU together. */
    public long pinnedBytes() {
        return pinnedByIommu.values().stream().flatMap(List::stream).mapToLong(AddressRange::size).sum();
    }

    private final class Watched implements Iommu {
        private final Iommu inner;

        Watched(Iommu inner) {
            this.inner = inner;
            pinnedByIommu.put(this, new CopyOnWriteArrayList<>());
            groupsByIommu.put(this, java.util.concurrent.ConcurrentHashMap.newKeySet());
        }

        @Override
        public String backend() {
            return inner.backend();
        }

        @Override
        public IommuInfo info() {
            return inner.info();
        }

        @Override
        public void map(AddressRange iova, HostAddress host, DmaPermissions permissions) {
            inner.map(iova, host, permissions);
            pinnedByIommu.get(this).add(AddressRange.of(host.value(), iova.size()));
        }

        @Override
        public List<DmaMapping> unmap(AddressRange iova) {
            List<DmaMapping> removed = inner.unmap(iova);
            for (DmaMapping m : removed) {
                pinnedByIommu.get(this).remove(AddressRange.of(m.host().value(), m.iova().size()));
            }
            return removed;
        }

        @Override
        public List<DmaMapping> mappings() {
            return inner.mappings();
        }

        @Override
        public long pinnedBytes() {
            return inner.pinnedBytes();
        }

        @Override
        public java.util.Optional<io.actovisor.devices.iommu.DmaPort> dmaPort() {
            return inner.dmaPort();
        }

        @Override
        public void close() {
            inner.close();
            pinnedByIommu.get(this).clear();
            groupsByIommu.get(this).clear();
        }

        @Override
        public String toString() {
            return inner.backend() + "@" + Integer.toHexString(System.identityHashCode(this));
        }
    }

    /** Host ranges currently pinned, for assertions. */
    public List<AddressRange> pinned() {
        List<AddressRange> all = new ArrayList<>();
        pinnedByIommu.values().forEach(all::addAll);
        return all;
    }
}
