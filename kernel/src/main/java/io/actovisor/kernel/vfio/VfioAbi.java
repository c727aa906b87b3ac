package io.actovisor.kernel.vfio;

/**
 * The kernel's VFIO user ABI as {@code <linux/vfio.h>} and {@code <linux/pci_regs.h>} define it on x86-64: every
 * constant, structure size and field offset this package uses, declared once. {@code VfioAbiTest} compiles a C
 * probe against the installed headers and compares each constant declared here (all of them, by reflection) with
 * what the compiler says, so nothing in this file is a guess.
 */
public final class VfioAbi {
    private VfioAbi() {
    }

    /** API version and the extension/IOMMU type ids of {@code VFIO_CHECK_EXTENSION} and {@code VFIO_SET_IOMMU}. */
    public static final class Api {
        public static final int VFIO_API_VERSION = 0;
        public static final int VFIO_TYPE1_IOMMU = 1;
        public static final int VFIO_TYPE1v2_IOMMU = 3;
        public static final int VFIO_UNMAP_ALL = 9;
        public static final int VFIO_TYPE = ';';
        public static final int VFIO_BASE = 100;

        private Api() {
        }
    }

    /** {@code struct vfio_info_cap_header}: the link of every INFO capability chain. */
    public static final class CapHeader {
        public static final int SIZE = 8;
        public static final int ID = 0;
        public static final int VERSION = 2;
        public static final int NEXT = 4;

        private CapHeader() {
        }
    }

    /** {@code struct vfio_group_status} and its flags. */
    public static final class GroupStatus {
        public static final int SIZE = 8;
        public static final int ARGSZ = 0;
        public static final int FLAGS = 4;
        public static final int FLAG_VIABLE = 1 << 0;
        public static final int FLAG_CONTAINER_SET = 1 << 1;

        private GroupStatus() {
        }
    }

    /** {@code struct vfio_device_info} and its flags. */
    public static final class DeviceInfo {
        public static final int SIZE = 20;
        public static final int ARGSZ = 0;
        public static final int FLAGS = 4;
        public static final int NUM_REGIONS = 8;
        public static final int NUM_IRQS = 12;
        public static final int CAP_OFFSET = 16;
        public static final int FLAG_RESET = 1 << 0;
        public static final int FLAG_PCI = 1 << 1;
        public static final int FLAG_PLATFORM = 1 << 2;
        public static final int FLAG_CAPS = 1 << 7;

        private DeviceInfo() {
        }
    }

    /** {@code struct vfio_region_info}, its flags and capability ids. */
    public static final class RegionInfo {
        public static final int SIZE = 32;
        public static final int ARGSZ = 0;
        public static final int FLAGS = 4;
        public static final int INDEX = 8;
        public static final int CAP_OFFSET = 12;
        public static final int REGION_SIZE = 16;
        public static final int OFFSET = 24;
        public static final int FLAG_READ = 1 << 0;
        public static final int FLAG_WRITE = 1 << 1;
        public static final int FLAG_MMAP = 1 << 2;
        public static final int FLAG_CAPS = 1 << 3;
        public static final int CAP_SPARSE_MMAP = 1;
        public static final int CAP_TYPE = 2;

        private RegionInfo() {
        }
    }

    /** {@code struct vfio_region_info_cap_sparse_mmap}: the parts of a region that may be mmap'ed. */
    public static final class SparseMmapCap {
        public static final int SIZE = 16;
        public static final int HEADER = 0;
        public static final int NR_AREAS = 8;
        public static final int AREAS = 16;

        private SparseMmapCap() {
        }
    }

    /** {@code struct vfio_region_sparse_mmap_area}. */
    public static final class SparseMmapArea {
        public static final int SIZE = 16;
        public static final int OFFSET = 0;
        public static final int AREA_SIZE = 8;

        private SparseMmapArea() {
        }
    }

    /** {@code struct vfio_iommu_type1_info}, its flags and capability ids. */
    public static final class IommuType1Info {
        public static final int SIZE = 24;
        public static final int ARGSZ = 0;
        public static final int FLAGS = 4;
        public static final int IOVA_PGSIZES = 8;
        public static final int CAP_OFFSET = 16;
        public static final int FLAG_PGSIZES = 1 << 0;
        public static final int FLAG_CAPS = 1 << 1;
        public static final int CAP_IOVA_RANGE = 1;
        public static final int CAP_MIGRATION = 2;
        public static final int CAP_DMA_AVAIL = 3;

        private IommuType1Info() {
        }
    }

    /** {@code struct vfio_iommu_type1_info_cap_iova_range}. */
    public static final class IovaRangeCap {
        public static final int SIZE = 16;
        public static final int HEADER = 0;
        public static final int NR_IOVAS = 8;
        public static final int IOVA_RANGES = 16;

        private IovaRangeCap() {
        }
    }

    /** {@code struct vfio_iova_range}: inclusive start and end. */
    public static final class IovaRange {
        public static final int SIZE = 16;
        public static final int START = 0;
        public static final int END = 8;

        private IovaRange() {
        }
    }

    /** {@code struct vfio_iommu_type1_info_dma_avail}. */
    public static final class DmaAvailCap {
        public static final int SIZE = 12;
        public static final int HEADER = 0;
        public static final int AVAIL = 8;

        private DmaAvailCap() {
        }
    }

    /** {@code struct vfio_iommu_type1_dma_map} and its flags. */
    public static final class DmaMap {
        public static final int SIZE = 32;
        public static final int ARGSZ = 0;
        public static final int FLAGS = 4;
        public static final int VADDR = 8;
        public static final int IOVA = 16;
        public static final int MAP_SIZE = 24;
        public static final int FLAG_READ = 1 << 0;
        public static final int FLAG_WRITE = 1 << 1;

        private DmaMap() {
        }
    }

    /** {@code struct vfio_iommu_type1_dma_unmap} (without the dirty-bitmap tail, which we never request). */
    public static final class DmaUnmap {
        public static final int SIZE = 24;
        public static final int ARGSZ = 0;
        public static final int FLAGS = 4;
        public static final int IOVA = 8;
        public static final int UNMAP_SIZE = 16;
        public static final int FLAG_ALL = 1 << 1;

        private DmaUnmap() {
        }
    }

    /** {@code struct vfio_irq_info} and its flags. */
    public static final class IrqInfo {
        public static final int SIZE = 16;
        public static final int ARGSZ = 0;
        public static final int FLAGS = 4;
        public static final int INDEX = 8;
        public static final int COUNT = 12;
        public static final int FLAG_EVENTFD = 1 << 0;
        public static final int FLAG_MASKABLE = 1 << 1;
        public static final int FLAG_AUTOMASKED = 1 << 2;
        public static final int FLAG_NORESIZE = 1 << 3;

        private IrqInfo() {
        }
    }

    /** {@code struct vfio_irq_set} (header; the data array follows at {@link #DATA}) and its flags. */
    public static final class IrqSet {
        public static final int SIZE = 20;
        public static final int ARGSZ = 0;
        public static final int FLAGS = 4;
        public static final int INDEX = 8;
        public static final int START = 12;
        public static final int COUNT = 16;
        public static final int DATA = 20;
        public static final int DATA_NONE = 1 << 0;
        public static final int DATA_BOOL = 1 << 1;
        public static final int DATA_EVENTFD = 1 << 2;
        public static final int ACTION_MASK = 1 << 3;
        public static final int ACTION_UNMASK = 1 << 4;
        public static final int ACTION_TRIGGER = 1 << 5;

        private IrqSet() {
        }
    }

    /** eventfd(2) flags, for the eventfds interrupts are delivered to. */
    public static final class Eventfd {
        public static final int EFD_CLOEXEC = 0x80000;
        public static final int EFD_NONBLOCK = 0x800;

        private Eventfd() {
        }
    }

    /** vfio-pci's fixed region indexes and the PCI config-space registers device code touches. */
    public static final class Pci {
        public static final int BAR0_REGION_INDEX = 0;
        public static final int BAR5_REGION_INDEX = 5;
        public static final int ROM_REGION_INDEX = 6;
        public static final int CONFIG_REGION_INDEX = 7;
        public static final int VGA_REGION_INDEX = 8;
        public static final int NUM_REGIONS = 9;
        public static final int INTX_IRQ_INDEX = 0;
        public static final int MSI_IRQ_INDEX = 1;
        public static final int MSIX_IRQ_INDEX = 2;
        public static final int ERR_IRQ_INDEX = 3;
        public static final int REQ_IRQ_INDEX = 4;
        public static final int NUM_IRQS = 5;
        public static final int VENDOR_ID = 0x00;
        public static final int DEVICE_ID = 0x02;
        public static final int COMMAND = 0x04;
        public static final int COMMAND_MEMORY = 0x2;
        public static final int COMMAND_MASTER = 0x4;

        private Pci() {
        }
    }
}
