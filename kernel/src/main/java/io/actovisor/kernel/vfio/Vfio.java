package io.actovisor.kernel.vfio;

import io.actovisor.memory.sys.Errno;
import io.actovisor.memory.sys.NativeException;
import io.actovisor.memory.sys.Posix;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import java.util.stream.Stream;

/**
 * Whether this host offers VFIO, and if not, why (Netty's {@code Epoll.isAvailable()} pattern). The container probe
 * opens {@code /dev/vfio/vfio}, checks the API version and the type1 extension, and closes it again; the group
 * probe additionally opens {@code /dev/vfio/<group>} and checks that the group is viable.
 */
public final class Vfio {
    /** Where the kernel puts the container and group files. */
    public static final Path DEFAULT_ROOT = Path.of("/dev/vfio");

    private Vfio() {
    }

    /** Whether a type1 VFIO container can be opened here. */
    public static boolean isAvailable() {
        return unavailabilityCause().isEmpty();
    }

    /** Throw {@link VfioException} with the reason unless a type1 VFIO container can be opened here. */
    public static void ensureAvailability() {
        if (!Posix.isAvailable()) {
            throw new VfioException(VfioException.Reason.NO_VFIO, Posix.unavailabilityCause().orElseThrow());
        }
        VfioContainer.open(Posix.system(), DEFAULT_ROOT).close();
    }

    /** Why a type1 VFIO container cannot be opened here, or empty if it can. Probed on each call. */
    public static Optional<String> unavailabilityCause() {
        if (!Posix.isAvailable()) {
            return Posix.unavailabilityCause();
        }
        return containerUnavailabilityCause(Posix.system(), DEFAULT_ROOT);
    }

    /** Why no type1 container can be opened under {@code root}, or empty; leaves nothing open. */
    public static Optional<String> containerUnavailabilityCause(Posix posix, Path root) {
        try {
            VfioContainer.open(posix, root).close();
            return Optional.empty();
        } catch (VfioException e) {
            return Optional.of(e.getMessage());
        }
    }

    /**
     * Why IOMMU group {@code group} cannot be used under {@code root} (no VFIO, group file missing, not viable, no
     * permission, busy, no type1), or empty; opens a container and the group, attaches nothing, closes both.
     */
    public static Optional<String> groupUnavailabilityCause(Posix posix, Path root, int group) {
        try (VfioContainer container = VfioContainer.open(posix, root);
                VfioGroup opened = VfioGroup.open(posix, root, group)) {
            return Optional.empty();
        } catch (VfioException e) {
            return Optional.of(e.getMessage());
        }
    }

    /** {@link #groupUnavailabilityCause(Posix, Path, int)} on this host's {@code /dev/vfio}. */
    public static Optional<String> groupUnavailabilityCause(int group) {
        if (!Posix.isAvailable()) {
            return Posix.unavailabilityCause();
        }
        return groupUnavailabilityCause(Posix.system(), DEFAULT_ROOT, group);
    }

    /** Where sysfs is mounted on a real host. */
    public static final Path DEFAULT_SYSFS = Path.of("/sys");

    /**
     * The IOMMU group of PCI device {@code pciAddress} (e.g. {@code 0000:03:00.0}), read from the
     * {@code iommu_group} link under {@code <sysfs>/bus/pci/devices}; empty when the device has none (no IOMMU).
     */
    public static Optional<Integer> groupOf(Path sysfs, String pciAddress) {
        Path link = sysfs.resolve("bus/pci/devices").resolve(pciAddress).resolve("iommu_group");
        try {
            return Optional.of(Integer.parseInt(Files.readSymbolicLink(link).getFileName().toString()));
        } catch (IOException | NumberFormatException e) {
            return Optional.empty();
        }
    }

    /**
     * The devices of IOMMU group {@code group} as {@code <sysfs>/kernel/iommu_groups/<group>/devices} lists them,
     * sorted; every one must be bound to vfio-pci (or to no driver) for the group to be viable.
     */
    public static List<String> groupDevices(Path sysfs, int group) {
        Path dir = sysfs.resolve("kernel/iommu_groups").resolve(Integer.toString(group)).resolve("devices");
        try (Stream<Path> entries = Files.list(dir)) {
            return entries.map(p -> p.getFileName().toString()).sorted().toList();
        } catch (IOException e) {
            throw new VfioException(VfioException.Reason.GROUP_MISSING, "IOMMU group " + group + " does not exist: "
                    + dir + " cannot be listed (" + e.getMessage() + ")", e);
        }
    }

    /**
     * The driver each device of {@code group} is bound to ({@code vfio-pci}, a host driver, or empty for none), in
     * device order: what a user needs to see when a group is not viable.
     */
    public static List<String> groupDrivers(Path sysfs, int group) {
        return groupDevices(sysfs, group).stream().map(device -> {
            Path driver = sysfs.resolve("bus/pci/devices").resolve(device).resolve("driver");
            try {
                return device + "=" + Files.readSymbolicLink(driver).getFileName();
            } catch (IOException e) {
                return device + "=(none)";
            }
        }).toList();
    }

    /** Open a file under {@code root} read-write, turning the errno into the reason a user can act on. */
    static int openVfioFile(Posix posix, Path root, Path path, String what) {
        try {
            return posix.open(path.toString(), Posix.O_RDWR);
        } catch (NativeException e) {
            throw openFailure(root, path, what, e);
        }
    }

    private static VfioException openFailure(Path root, Path path, String what, NativeException e) {
        return switch (e.errno()) {
            case Errno.ENOENT, Errno.ENODEV, Errno.ENXIO -> {
                if (!Files.isDirectory(root)) {
                    yield new VfioException(VfioException.Reason.NO_VFIO, "no " + root + ": the host has no VFIO"
                            + " (enable the IOMMU with intel_iommu=on or amd_iommu=on, then modprobe vfio-pci; see"
                            + " docs/vfio.md)", e);
                }
                yield path.getFileName().toString().equals("vfio")
                        ? new VfioException(VfioException.Reason.NO_VFIO, "no " + path + ": the vfio module is not"
                                + " loaded (modprobe vfio)", e)
                        : new VfioException(VfioException.Reason.GROUP_MISSING, "no " + path + ": " + what
                                + " has no device bound to vfio-pci (see docs/vfio.md)", e);
            }
            case Errno.EACCES, Errno.EPERM -> new VfioException(VfioException.Reason.NO_PERMISSION, "no permission"
                    + " to open " + path + " for " + what + ": give this user read-write access (chown or a udev"
                    + " rule, see docs/vfio.md)", e);
            case Errno.EBUSY -> new VfioException(VfioException.Reason.GROUP_BUSY, what + " at " + path
                    + " is already open in another process", e);
            default -> new VfioException(VfioException.Reason.NATIVE, "cannot open " + what + ": " + e.getMessage(),
                    e);
        };
    }
}
