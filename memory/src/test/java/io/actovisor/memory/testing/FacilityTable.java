package io.actovisor.memory.testing;

import io.actovisor.memory.HostMemory;
import io.actovisor.memory.PfnUnavailableException;
import io.actovisor.memory.sys.NativeBuffer;
import io.actovisor.memory.sys.Posix;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.OptionalLong;

/**
 * The native facilities the tests use, probed cheaply and printed as one table at the start of the build (see
 * {@link FacilitySession}): KVM (native, emulated host or none), io_uring, pagemap PFNs and VFIO (host, nested edu
 * guest or none), each "none" with its reason. The tests themselves probe again through the production probes
 * ({@code Kvm.unavailabilityCause()} and friends); this table only tells the reader up front what will be skipped.
 */
public final class FacilityTable {
    /** One line of the table. */
    public record Row(String facility, String state, String detail) {
    }

    private static final long IO_URING_SETUP = 425;
    private static final int IO_URING_PARAMS_SIZE = 120;

    private FacilityTable() {
    }

    /** Probe every facility now. */
    public static List<Row> probe() {
        GuestImages.Facilities images = GuestImages.probe();
        List<Row> rows = new ArrayList<>();
        rows.add(kvm(images));
        rows.add(ioUring());
        rows.add(pagemap());
        rows.add(vfio(images));
        rows.add(new Row("timeout factor", String.valueOf(TestTimeouts.factor()), TestTimeouts.PROPERTY));
        return rows;
    }

    /** The table as text, one facility a line. */
    public static String render(List<Row> rows) {
        StringBuilder text = new StringBuilder("actovisor test facilities (see docs/testing.md)\n");
        for (Row row : rows) {
            text.append(String.format("  %-15s %-17s %s%n", row.facility(), row.state(), row.detail()));
        }
        return text.toString();
    }

    static Row kvm(GuestImages.Facilities images) {
        KvmHost.Choice choice = KvmHost.choice();
        if (choice == KvmHost.Choice.NONE) {
            return new Row("KVM", "none", "switched off by " + KvmHost.PROPERTY + "=none / " + KvmHost.VARIABLE
                    + "=none: every KVM test is skipped");
        }
        if (KvmHost.runsEmulated()) {
            String why = choice == KvmHost.Choice.EMULATED ? "forced by " + KvmHost.PROPERTY + "=emulated"
                    : KvmHost.DEVICE + " is missing" + KvmHost.hint();
            return images.unavailabilityCause()
                    .map(cause -> new Row("KVM", "none", why + "; the emulated host cannot boot: " + cause))
                    .orElseGet(() -> new Row("KVM", "emulated host", why + "; the KVM tests run in QEMU TCG "
                            + "(-cpu qemu64,+svm,+npt, kvm-amd) from it-tests"));
        }
        if (!Files.isReadable(KvmHost.DEVICE) || !Files.isWritable(KvmHost.DEVICE)) {
            return new Row("KVM", "none", KvmHost.DEVICE + " is not read-write for this user: join the kvm group");
        }
        return new Row("KVM", "native", KvmHost.DEVICE.toString());
    }

    static Row ioUring() {
        Optional<String> posix = Posix.unavailabilityCause();
        if (posix.isPresent()) {
            return new Row("io_uring", "none", posix.get());
        }
        Path sysctl = Path.of("/proc/sys/kernel/io_uring_disabled");
        try {
            if (Files.exists(sysctl) && !Files.readString(sysctl).trim().equals("0")) {
                return new Row("io_uring", "none", "kernel.io_uring_disabled = " + Files.readString(sysctl).trim());
            }
        } catch (java.io.IOException e) {
            // An unreadable sysctl tells nothing; the setup call does.
        }
        Posix p = Posix.system();
        try (NativeBuffer params = NativeBuffer.allocate(IO_URING_PARAMS_SIZE)) {
            int fd = (int) p.syscall("io_uring_setup", IO_URING_SETUP, 1, params.address(), 0, 0, 0, 0);
            p.close(fd);
            return new Row("io_uring", "yes", "io_uring_setup works (pinned IOMMU backend, device DMA)");
        } catch (RuntimeException e) {
            return new Row("io_uring", "none", "io_uring_setup failed: " + e.getMessage()
                    + " (needs Linux 5.19+ with io_uring enabled)");
        }
    }

    static Row pagemap() {
        Optional<String> posix = Posix.unavailabilityCause();
        if (posix.isPresent()) {
            return new Row("pagemap PFNs", "none", posix.get());
        }
        try (HostMemory page = HostMemory.anonymous("facility-probe", HostMemory.PAGE_SIZE)) {
            page.writeByte(page.base(), (byte) 1);
            OptionalLong pfn = page.pfn(page.base());
            return pfn.isPresent() ? new Row("pagemap PFNs", "yes", "/proc/self/pagemap shows page frame numbers")
                    : new Row("pagemap PFNs", "none", "a page just written reads as not present in pagemap");
        } catch (PfnUnavailableException e) {
            return new Row("pagemap PFNs", "none", e.getMessage() + " (run as root or with CAP_SYS_ADMIN)");
        } catch (RuntimeException e) {
            return new Row("pagemap PFNs", "none", e.getMessage());
        }
    }

    static Row vfio(GuestImages.Facilities images) {
        Path container = Path.of("/dev/vfio/vfio");
        String hostCause;
        if (!Files.exists(container)) {
            hostCause = container + " is missing (no vfio module)";
        } else if (!Files.isReadable(container) || !Files.isWritable(container)) {
            hostCause = container + " is not read-write for this user";
        } else {
            try (var groups = Files.list(container.getParent())) {
                List<Path> usable = groups.filter(g -> g.getFileName().toString().matches("[0-9]+"))
                        .filter(g -> Files.isReadable(g) && Files.isWritable(g)).toList();
                if (!usable.isEmpty()) {
                    return new Row("VFIO", "host", container + " and group(s) " + usable.stream()
                            .map(g -> g.getFileName().toString()).toList());
                }
                hostCause = "no IOMMU group under /dev/vfio is bound to vfio-pci and read-write for this user";
            } catch (java.io.IOException e) {
                hostCause = "cannot list /dev/vfio: " + e.getMessage();
            }
        }
        String why = hostCause;
        return images.unavailabilityCause()
                .map(cause -> new Row("VFIO", "none", why + "; the nested edu guest cannot boot: " + cause))
                .orElseGet(() -> new Row("VFIO", "nested edu guest", why + "; the type1 tests run in the nested "
                        + "guest (QEMU TCG, intel-iommu, edu)"));
    }
}
