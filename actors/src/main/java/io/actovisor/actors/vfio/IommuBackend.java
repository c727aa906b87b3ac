package io.actovisor.actors.vfio;

import io.actovisor.devices.iommu.Iommu;
import io.actovisor.devices.iommu.model.ModelIommu;
import io.actovisor.devices.iommu.vfio.VfioType1Iommu;
import java.util.List;
import java.util.function.Supplier;

/**
 * How a {@link VfioContainerActor}'s IOMMU side, {@link ContainerDmaActor}, opens the container's IOMMU context and
 * joins groups to it. It opens a {@link Context} when the container's first group attaches and closes its IOMMU when
 * the last group leaves; further groups join
 * and leave through the context, which knows its own IOMMU's type (no downcast): for {@code vfio-type1} each group is
 * attached to the same kernel container, for the other backends groups share the context as it is.
 */
public interface IommuBackend {
    /** The backend's configuration name. */
    String name();

    /** Open a context whose first group is {@code groupId}. */
    Context open(String groupId);

    /** An open IOMMU context: its IOMMU, and how further groups join and leave it. */
    interface Context {
        /** The context's IOMMU; the container's {@link ContainerDmaActor} owns it and closes it. */
        Iommu iommu();

        /** Join {@code groupId} to this context. */
        void attach(String groupId);

        /** Take {@code groupId} out of this context, which keeps other groups. */
        void detach(String groupId);
    }

    /** A context whose groups all share {@code iommu} as it is (model, pinned). */
    static Context sharedContext(Iommu iommu) {
        return new Context() {
            @Override
            public Iommu iommu() {
                return iommu;
            }

            @Override
            public void attach(String groupId) {
            }

            @Override
            public void detach(String groupId) {
            }
        };
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
            public Context open(String groupId) {
                return sharedContext(open.get());
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
            public Context open(String groupId) {
                VfioType1Iommu type1 = VfioType1Iommu.open(List.of(groupNumber(groupId)));
                return new Context() {
                    @Override
                    public Iommu iommu() {
                        return type1;
                    }

                    @Override
                    public void attach(String group) {
                        type1.attachGroup(groupNumber(group));
                    }

                    @Override
                    public void detach(String group) {
                        type1.detachGroup(groupNumber(group));
                    }
                };
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
