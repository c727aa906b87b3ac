package io.actovisor.actors.vfio;

import io.actovisor.devices.iommu.Iommu;
import io.actovisor.devices.iommu.model.ModelIommu;
import io.actovisor.devices.iommu.vfio.VfioType1Iommu;
import java.util.List;
import java.util.function.Supplier;

/**
 * How a {@link VfioContainerActor} opens its IOMMU context and joins groups to it. A container opens the context
 * when its first group attaches and closes it when its last group leaves; for {@code vfio-type1} each further group
 * is attached to the same kernel container, for the other backends groups share the context as it is.
 */
public interface IommuBackend {
    /** The backend's configuration name. */
    String name();

    /** Open a context whose first group is {@code groupId}. */
    Iommu open(String groupId);

    /** Join {@code groupId} to an open context. */
    default void attach(Iommu iommu, String groupId) {
    }

    /** Take {@code groupId} out of an open context that keeps other groups. */
    default void detach(Iommu iommu, String groupId) {
    }

    /** The model backend with {@code maxMappings} as its mapping limit. */
    static IommuBackend model(int maxMappings) {
        return shared(ModelIommu.BACKEND, () -> ModelIommu.create(maxMappings));
    }

    /** A backend whose groups all share one context opened by {@code open} (model, pinned). */
    static IommuBackend shared(String name, Supplier<? extends Iommu> open) {
        return new IommuBackend() {
            @Override
            public String name() {
                return name;
            }

            @Override
            public Iommu open(String groupId) {
                return open.get();
            }
        };
    }

    /** The kernel's VFIO type1 driver on this host; group ids are the numbers of {@code /dev/vfio/<id>}. */
    static IommuBackend vfioType1() {
        return new IommuBackend() {
            @Override
            public String name() {
                return VfioType1Iommu.BACKEND;
            }

            @Override
            public Iommu open(String groupId) {
                return VfioType1Iommu.open(List.of(groupNumber(groupId)));
            }

            @Override
            public void attach(Iommu iommu, String groupId) {
                ((VfioType1Iommu) iommu).attachGroup(groupNumber(groupId));
            }

            @Override
            public void detach(Iommu iommu, String groupId) {
                ((VfioType1Iommu) iommu).detachGroup(groupNumber(groupId));
            }

            private int groupNumber(String groupId) {
                try {
                    return Integer.parseInt(groupId);
                } catch (NumberFormatException e) {
                    throw new IllegalArgumentException("vfio-type1 group id must be the number of /dev/vfio/<id>, was '"
                            + groupId + "'", e);
                }
            }
        };
    }
}
