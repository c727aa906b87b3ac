package io.actovisor.kernel.vfio;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.Map;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.constraints.IntRange;
import net.jqwik.api.constraints.Size;

/**
 * Whatever a (broken) kernel writes into the VFIO_IOMMU_GET_INFO reply, the container either reads it or refuses
 * it with a {@link VfioException} naming the ioctl; it never reads outside the buffer or loops.
 */
class VfioContainerFuzzTest {
    @Property(tries = 300)
    void arbitraryGetInfoRepliesAreReadOrRefused(@ForAll @Size(min = 24, max = 120) byte[] reply,
            @ForAll @IntRange(min = 0, max = 160) int argsz, @ForAll boolean caps) {
        Path root = Path.of("/dev/vfio-fuzz");
        RecordingPosix posix = ScriptedVfioHost.create(root, 1).on("VFIO_IOMMU_GET_INFO", (call, arg) -> {
            var info = arg.orElseThrow();
            info.putBytes(0, reply, 0, Math.min(reply.length, info.size()));
            info.putInt(VfioAbi.IommuType1Info.ARGSZ, argsz);
            int flags = info.getInt(VfioAbi.IommuType1Info.FLAGS);
            info.putInt(VfioAbi.IommuType1Info.FLAGS, caps ? flags | VfioAbi.IommuType1Info.FLAG_CAPS : flags);
            return 0;
        });
        try (VfioContainer container = VfioContainer.open(posix, root);
                VfioGroup group = VfioGroup.open(posix, root, 1)) {
            container.attach(group);
            try {
                VfioIommuInfo info = container.iommuInfo();
                assertTrue(info.chain().capabilities().size() <= 20);
            } catch (VfioException e) {
                assertTrue(e.getMessage().contains("VFIO_IOMMU_GET_INFO"), e.getMessage());
            }
        }
        assertEquals(Map.of(), posix.openFds());
    }
}
