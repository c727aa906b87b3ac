package io.actovisor.kernel.vfio;

import io.actovisor.memory.AddressRange;
import io.actovisor.memory.sys.NativeBuffer;
import java.nio.file.Path;
import java.util.List;

/**
 * A {@link RecordingPosix} scripted to answer like a host with VFIO: a container that speaks API version 0 and
 * both type1 flavours, viable groups, and a {@code VFIO_IOMMU_GET_INFO} that first reports the size it needs
 * (argsz) and then fills in page sizes and a capability chain (IOVA ranges, then DMA mappings available), the way
 * the kernel's type1 driver does. Tests change single answers with {@code on}/{@code once}/{@code fail}.
 */
public final class ScriptedVfioHost {
    public static final long PAGE_SIZES = 0x4000_0000L | 0x20_0000L | 0x1000L; // 4 KiB, 2 MiB, 1 GiB
    public static final List<AddressRange> IOVA_RANGES = List.of(
            AddressRange.inclusive(0, 0xfedf_ffffL), AddressRange.inclusive(0xfef0_0000L, 0xffff_ffff_ffffL));
    public static final int DMA_AVAILABLE = 65000;

    private ScriptedVfioHost() {
    }

    /** A double with {@code <root>/vfio} and {@code <root>/<group>} for each group. */
    public static RecordingPosix create(Path root, int... groups) {
        RecordingPosix posix = new RecordingPosix().file(root.resolve("vfio").toString());
        for (int group : groups) {
            posix.file(root.resolve(Integer.toString(group)).toString());
        }
        posix.argumentKind("VFIO_GROUP_GET_STATUS", RecordingPosix.ArgumentKind.ARGSZ_STRUCT)
                .argumentKind("VFIO_GROUP_SET_CONTAINER", RecordingPosix.ArgumentKind.INT_POINTER)
                .argumentKind("VFIO_GROUP_GET_DEVICE_FD", RecordingPosix.ArgumentKind.C_STRING)
                .argumentKind("VFIO_IOMMU_GET_INFO", RecordingPosix.ArgumentKind.ARGSZ_STRUCT)
                .argumentKind("VFIO_IOMMU_MAP_DMA", RecordingPosix.ArgumentKind.ARGSZ_STRUCT)
                .argumentKind("VFIO_IOMMU_UNMAP_DMA", RecordingPosix.ArgumentKind.ARGSZ_STRUCT)
                .argumentKind("VFIO_DEVICE_GET_INFO", RecordingPosix.ArgumentKind.ARGSZ_STRUCT)
                .argumentKind("VFIO_DEVICE_GET_REGION_INFO", RecordingPosix.ArgumentKind.ARGSZ_STRUCT)
                .argumentKind("VFIO_DEVICE_GET_IRQ_INFO", RecordingPosix.ArgumentKind.ARGSZ_STRUCT)
                .argumentKind("VFIO_DEVICE_SET_IRQS", RecordingPosix.ArgumentKind.ARGSZ_STRUCT);
        posix.on("VFIO_CHECK_EXTENSION", (call, arg) -> call.arg() == VfioAbi.Api.VFIO_TYPE1v2_IOMMU
                || call.arg() == VfioAbi.Api.VFIO_TYPE1_IOMMU ? 1 : 0);
        posix.on("VFIO_GROUP_GET_STATUS", (call, arg) -> {
            arg.orElseThrow().putInt(VfioAbi.GroupStatus.FLAGS, VfioAbi.GroupStatus.FLAG_VIABLE);
            return 0;
        });
        posix.on("VFIO_IOMMU_GET_INFO", (call, arg) -> {
            writeIommuInfo(arg.orElseThrow(), IOVA_RANGES, DMA_AVAILABLE);
            return 0;
        });
        return posix;
    }

    /** The size of the GET_INFO reply with {@code ranges} and the DMA-available capability. */
    public static int iommuInfoSize(int ranges) {
        int iova = VfioAbi.IommuType1Info.SIZE;
        int avail = iova + VfioAbi.IovaRangeCap.SIZE + ranges * VfioAbi.IovaRange.SIZE;
        return avail + VfioAbi.DmaAvailCap.SIZE;
    }

    /**
     * Answer GET_INFO as type1 does: page sizes always; if the caller's argsz is too small for the chain, set
     * argsz to the size needed and leave cap_offset 0; otherwise write the chain.
     */
    public static void writeIommuInfo(NativeBuffer info, List<AddressRange> ranges, int dmaAvailable) {
        int needed = iommuInfoSize(ranges.size());
        info.putInt(VfioAbi.IommuType1Info.FLAGS,
                VfioAbi.IommuType1Info.FLAG_PGSIZES | VfioAbi.IommuType1Info.FLAG_CAPS);
        info.putLong(VfioAbi.IommuType1Info.IOVA_PGSIZES, PAGE_SIZES);
        if (info.getInt(VfioAbi.IommuType1Info.ARGSZ) < needed) {
            info.putInt(VfioAbi.IommuType1Info.ARGSZ, needed);
            info.putInt(VfioAbi.IommuType1Info.CAP_OFFSET, 0);
            return;
        }
        int iova = VfioAbi.IommuType1Info.SIZE;
        int avail = iova + VfioAbi.IovaRangeCap.SIZE + ranges.size() * VfioAbi.IovaRange.SIZE;
        info.putInt(VfioAbi.IommuType1Info.CAP_OFFSET, iova);
        info.putShort(iova + VfioAbi.CapHeader.ID, (short) VfioAbi.IommuType1Info.CAP_IOVA_RANGE)
                .putShort(iova + VfioAbi.CapHeader.VERSION, (short) 1)
                .putInt(iova + VfioAbi.CapHeader.NEXT, avail)
                .putInt(iova + VfioAbi.IovaRangeCap.NR_IOVAS, ranges.size());
        for (int i = 0; i < ranges.size(); i++) {
            int entry = iova + VfioAbi.IovaRangeCap.IOVA_RANGES + i * VfioAbi.IovaRange.SIZE;
            info.putLong(entry + VfioAbi.IovaRange.START, ranges.get(i).base())
                    .putLong(entry + VfioAbi.IovaRange.END, ranges.get(i).last());
        }
        info.putShort(avail + VfioAbi.CapHeader.ID, (short) VfioAbi.IommuType1Info.CAP_DMA_AVAIL)
                .putShort(avail + VfioAbi.CapHeader.VERSION, (short) 1)
                .putInt(avail + VfioAbi.CapHeader.NEXT, 0)
                .putInt(avail + VfioAbi.DmaAvailCap.AVAIL, dmaAvailable);
    }
}
