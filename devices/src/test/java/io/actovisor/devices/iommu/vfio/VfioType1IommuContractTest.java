package io.actovisor.devices.iommu.vfio;

import io.actovisor.devices.iommu.Iommu;
import io.actovisor.devices.iommu.IommuContractTest;
import io.actovisor.kernel.vfio.RecordingPosix;
import io.actovisor.kernel.vfio.ScriptedVfioHost;
import io.actovisor.kernel.vfio.Type1KernelModel;
import java.nio.file.Path;
import java.util.List;

/**
 * The type1 contract, held against the {@code vfio-type1} backend talking to a model of the kernel's type1v2 driver
 * through the recording Posix double (this machine has no {@code /dev/vfio}; see {@code VfioType1IommuHostTest}
 * for the real one).
 */
class VfioType1IommuContractTest extends IommuContractTest {
    private static final int GROUP = 7;
    private static final Path ROOT = Path.of("/dev/vfio-double");

    @Override
    protected Iommu open(int maxMappings) {
        RecordingPosix posix = ScriptedVfioHost.create(ROOT, GROUP);
        new Type1KernelModel(4096, ScriptedVfioHost.IOVA_RANGES, maxMappings).install(posix);
        posix.on("VFIO_IOMMU_GET_INFO", (call, arg) -> {
            ScriptedVfioHost.writeIommuInfo(arg.orElseThrow(), ScriptedVfioHost.IOVA_RANGES, maxMappings);
            return 0;
        });
        return VfioType1Iommu.open(posix, ROOT, List.of(GROUP));
    }

    @Override
    protected String expectedBackend() {
        return VfioType1Iommu.BACKEND;
    }
}
