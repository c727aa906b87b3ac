/*
 * Prints, one "Key value" line each, every VFIO constant, structure size, field offset and ioctl number that
 * io.actovisor.kernel.vfio.VfioAbi and VfioIoctls declare, as the installed kernel headers define them.
 * Keys are "<nested class>.<constant>" of VfioAbi, and "Ioctl.<name>" for VfioIoctls.
 */
#include <stddef.h>
#include <stdio.h>
#include <linux/vfio.h>
#include <linux/pci_regs.h>
#include <sys/eventfd.h>

#define VAL(key, expr) printf("%s %lld\n", key, (long long) (expr))
#define SIZE(key, type) VAL(key, sizeof(struct type))
#define OFF(key, type, field) VAL(key, offsetof(struct type, field))
#define IOC(name) printf("Ioctl.%s %lu\n", #name, (unsigned long) (name))

int main(void) {
    VAL("Api.VFIO_API_VERSION", VFIO_API_VERSION);
    VAL("Api.VFIO_TYPE1_IOMMU", VFIO_TYPE1_IOMMU);
    VAL("Api.VFIO_TYPE1v2_IOMMU", VFIO_TYPE1v2_IOMMU);
    VAL("Api.VFIO_UNMAP_ALL", VFIO_UNMAP_ALL);
    VAL("Api.VFIO_TYPE", VFIO_TYPE);
    VAL("Api.VFIO_BASE", VFIO_BASE);

    SIZE("CapHeader.SIZE", vfio_info_cap_header);
    OFF("CapHeader.ID", vfio_info_cap_header, id);
    OFF("CapHeader.VERSION", vfio_info_cap_header, version);
    OFF("CapHeader.NEXT", vfio_info_cap_header, next);

    SIZE("GroupStatus.SIZE", vfio_group_status);
    OFF("GroupStatus.ARGSZ", vfio_group_status, argsz);
    OFF("GroupStatus.FLAGS", vfio_group_status, flags);
    VAL("GroupStatus.FLAG_VIABLE", VFIO_GROUP_FLAGS_VIABLE);
    VAL("GroupStatus.FLAG_CONTAINER_SET", VFIO_GROUP_FLAGS_CONTAINER_SET);

    SIZE("DeviceInfo.SIZE", vfio_device_info);
    OFF("DeviceInfo.ARGSZ", vfio_device_info, argsz);
    OFF("DeviceInfo.FLAGS", vfio_device_info, flags);
    OFF("DeviceInfo.NUM_REGIONS", vfio_device_info, num_regions);
    OFF("DeviceInfo.NUM_IRQS", vfio_device_info, num_irqs);
    OFF("DeviceInfo.CAP_OFFSET", vfio_device_info, cap_offset);
    VAL("DeviceInfo.FLAG_RESET", VFIO_DEVICE_FLAGS_RESET);
    VAL("DeviceInfo.FLAG_PCI", VFIO_DEVICE_FLAGS_PCI);
    VAL("DeviceInfo.FLAG_PLATFORM", VFIO_DEVICE_FLAGS_PLATFORM);
    VAL("DeviceInfo.FLAG_CAPS", VFIO_DEVICE_FLAGS_CAPS);

    SIZE("RegionInfo.SIZE", vfio_region_info);
    OFF("RegionInfo.ARGSZ", vfio_region_info, argsz);
    OFF("RegionInfo.FLAGS", vfio_region_info, flags);
    OFF("RegionInfo.INDEX", vfio_region_info, index);
    OFF("RegionInfo.CAP_OFFSET", vfio_region_info, cap_offset);
    OFF("RegionInfo.REGION_SIZE", vfio_region_info, size);
    OFF("RegionInfo.OFFSET", vfio_region_info, offset);
    VAL("RegionInfo.FLAG_READ", VFIO_REGION_INFO_FLAG_READ);
    VAL("RegionInfo.FLAG_WRITE", VFIO_REGION_INFO_FLAG_WRITE);
    VAL("RegionInfo.FLAG_MMAP", VFIO_REGION_INFO_FLAG_MMAP);
    VAL("RegionInfo.FLAG_CAPS", VFIO_REGION_INFO_FLAG_CAPS);
    VAL("RegionInfo.CAP_SPARSE_MMAP", VFIO_REGION_INFO_CAP_SPARSE_MMAP);
    VAL("RegionInfo.CAP_TYPE", VFIO_REGION_INFO_CAP_TYPE);

    SIZE("SparseMmapCap.SIZE", vfio_region_info_cap_sparse_mmap);
    OFF("SparseMmapCap.HEADER", vfio_region_info_cap_sparse_mmap, header);
    OFF("SparseMmapCap.NR_AREAS", vfio_region_info_cap_sparse_mmap, nr_areas);
    OFF("SparseMmapCap.AREAS", vfio_region_info_cap_sparse_mmap, areas);
    SIZE("SparseMmapArea.SIZE", vfio_region_sparse_mmap_area);
    OFF("SparseMmapArea.OFFSET", vfio_region_sparse_mmap_area, offset);
    OFF("SparseMmapArea.AREA_SIZE", vfio_region_sparse_mmap_area, size);

    SIZE("IommuType1Info.SIZE", vfio_iommu_type1_info);
    OFF("IommuType1Info.ARGSZ", vfio_iommu_type1_info, argsz);
    OFF("IommuType1Info.FLAGS", vfio_iommu_type1_info, flags);
    OFF("IommuType1Info.IOVA_PGSIZES", vfio_iommu_type1_info, iova_pgsizes);
    OFF("IommuType1Info.CAP_OFFSET", vfio_iommu_type1_info, cap_offset);
    VAL("IommuType1Info.FLAG_PGSIZES", VFIO_IOMMU_INFO_PGSIZES);
    VAL("IommuType1Info.FLAG_CAPS", VFIO_IOMMU_INFO_CAPS);
    VAL("IommuType1Info.CAP_IOVA_RANGE", VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE);
    VAL("IommuType1Info.CAP_MIGRATION", VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION);
    VAL("IommuType1Info.CAP_DMA_AVAIL", VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL);

    SIZE("IovaRangeCap.SIZE", vfio_iommu_type1_info_cap_iova_range);
    OFF("IovaRangeCap.HEADER", vfio_iommu_type1_info_cap_iova_range, header);
    OFF("IovaRangeCap.NR_IOVAS", vfio_iommu_type1_info_cap_iova_range, nr_iovas);
    OFF("IovaRangeCap.IOVA_RANGES", vfio_iommu_type1_info_cap_iova_range, iova_ranges);
    SIZE("IovaRange.SIZE", vfio_iova_range);
    OFF("IovaRange.START", vfio_iova_range, start);
    OFF("IovaRange.END", vfio_iova_range, end);

    SIZE("DmaAvailCap.SIZE", vfio_iommu_type1_info_dma_avail);
    OFF("DmaAvailCap.HEADER", vfio_iommu_type1_info_dma_avail, header);
    OFF("DmaAvailCap.AVAIL", vfio_iommu_type1_info_dma_avail, avail);

    SIZE("DmaMap.SIZE", vfio_iommu_type1_dma_map);
    OFF("DmaMap.ARGSZ", vfio_iommu_type1_dma_map, argsz);
    OFF("DmaMap.FLAGS", vfio_iommu_type1_dma_map, flags);
    OFF("DmaMap.VADDR", vfio_iommu_type1_dma_map, vaddr);
    OFF("DmaMap.IOVA", vfio_iommu_type1_dma_map, iova);
    OFF("DmaMap.MAP_SIZE", vfio_iommu_type1_dma_map, size);
    VAL("DmaMap.FLAG_READ", VFIO_DMA_MAP_FLAG_READ);
    VAL("DmaMap.FLAG_WRITE", VFIO_DMA_MAP_FLAG_WRITE);

    SIZE("DmaUnmap.SIZE", vfio_iommu_type1_dma_unmap);
    OFF("DmaUnmap.ARGSZ", vfio_iommu_type1_dma_unmap, argsz);
    OFF("DmaUnmap.FLAGS", vfio_iommu_type1_dma_unmap, flags);
    OFF("DmaUnmap.IOVA", vfio_iommu_type1_dma_unmap, iova);
    OFF("DmaUnmap.UNMAP_SIZE", vfio_iommu_type1_dma_unmap, size);
    VAL("DmaUnmap.FLAG_ALL", VFIO_DMA_UNMAP_FLAG_ALL);

    SIZE("IrqInfo.SIZE", vfio_irq_info);
    OFF("IrqInfo.ARGSZ", vfio_irq_info, argsz);
    OFF("IrqInfo.FLAGS", vfio_irq_info, flags);
    OFF("IrqInfo.INDEX", vfio_irq_info, index);
    OFF("IrqInfo.COUNT", vfio_irq_info, count);
    VAL("IrqInfo.FLAG_EVENTFD", VFIO_IRQ_INFO_EVENTFD);
    VAL("IrqInfo.FLAG_MASKABLE", VFIO_IRQ_INFO_MASKABLE);
    VAL("IrqInfo.FLAG_AUTOMASKED", VFIO_IRQ_INFO_AUTOMASKED);
    VAL("IrqInfo.FLAG_NORESIZE", VFIO_IRQ_INFO_NORESIZE);

    SIZE("IrqSet.SIZE", vfio_irq_set);
    OFF("IrqSet.ARGSZ", vfio_irq_set, argsz);
    OFF("IrqSet.FLAGS", vfio_irq_set, flags);
    OFF("IrqSet.INDEX", vfio_irq_set, index);
    OFF("IrqSet.START", vfio_irq_set, start);
    OFF("IrqSet.COUNT", vfio_irq_set, count);
    OFF("IrqSet.DATA", vfio_irq_set, data);
    VAL("IrqSet.DATA_NONE", VFIO_IRQ_SET_DATA_NONE);
    VAL("IrqSet.DATA_BOOL", VFIO_IRQ_SET_DATA_BOOL);
    VAL("IrqSet.DATA_EVENTFD", VFIO_IRQ_SET_DATA_EVENTFD);
    VAL("IrqSet.ACTION_MASK", VFIO_IRQ_SET_ACTION_MASK);
    VAL("IrqSet.ACTION_UNMASK", VFIO_IRQ_SET_ACTION_UNMASK);
    VAL("IrqSet.ACTION_TRIGGER", VFIO_IRQ_SET_ACTION_TRIGGER);

    VAL("Eventfd.EFD_CLOEXEC", EFD_CLOEXEC);
    VAL("Eventfd.EFD_NONBLOCK", EFD_NONBLOCK);

    VAL("Pci.BAR0_REGION_INDEX", VFIO_PCI_BAR0_REGION_INDEX);
    VAL("Pci.BAR5_REGION_INDEX", VFIO_PCI_BAR5_REGION_INDEX);
    VAL("Pci.ROM_REGION_INDEX", VFIO_PCI_ROM_REGION_INDEX);
    VAL("Pci.CONFIG_REGION_INDEX", VFIO_PCI_CONFIG_REGION_INDEX);
    VAL("Pci.VGA_REGION_INDEX", VFIO_PCI_VGA_REGION_INDEX);
    VAL("Pci.NUM_REGIONS", VFIO_PCI_NUM_REGIONS);
    VAL("Pci.INTX_IRQ_INDEX", VFIO_PCI_INTX_IRQ_INDEX);
    VAL("Pci.MSI_IRQ_INDEX", VFIO_PCI_MSI_IRQ_INDEX);
    VAL("Pci.MSIX_IRQ_INDEX", VFIO_PCI_MSIX_IRQ_INDEX);
    VAL("Pci.ERR_IRQ_INDEX", VFIO_PCI_ERR_IRQ_INDEX);
    VAL("Pci.REQ_IRQ_INDEX", VFIO_PCI_REQ_IRQ_INDEX);
    VAL("Pci.NUM_IRQS", VFIO_PCI_NUM_IRQS);
    VAL("Pci.VENDOR_ID", PCI_VENDOR_ID);
    VAL("Pci.DEVICE_ID", PCI_DEVICE_ID);
    VAL("Pci.COMMAND", PCI_COMMAND);
    VAL("Pci.COMMAND_MEMORY", PCI_COMMAND_MEMORY);
    VAL("Pci.COMMAND_MASTER", PCI_COMMAND_MASTER);

    IOC(VFIO_GET_API_VERSION);
    IOC(VFIO_CHECK_EXTENSION);
    IOC(VFIO_SET_IOMMU);
    IOC(VFIO_GROUP_GET_STATUS);
    IOC(VFIO_GROUP_SET_CONTAINER);
    IOC(VFIO_GROUP_UNSET_CONTAINER);
    IOC(VFIO_GROUP_GET_DEVICE_FD);
    IOC(VFIO_DEVICE_GET_INFO);
    IOC(VFIO_DEVICE_GET_REGION_INFO);
    IOC(VFIO_DEVICE_GET_IRQ_INFO);
    IOC(VFIO_DEVICE_SET_IRQS);
    IOC(VFIO_DEVICE_RESET);
    IOC(VFIO_IOMMU_GET_INFO);
    IOC(VFIO_IOMMU_MAP_DMA);
    IOC(VFIO_IOMMU_UNMAP_DMA);
    return 0;
}
