package io.actovisor.it.emulated;

import io.actovisor.devices.boot.linux.BzImage;
import io.actovisor.devices.boot.linux.Initramfs;
import io.actovisor.devices.boot.linux.KernelLocator;
import io.actovisor.kernel.kvm.Kvm;
import io.actovisor.memory.testing.KvmHost;
import java.nio.file.Path;
import java.util.Optional;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The test classes that boot a Linux guest (JUnit tag {@value #TAG}, besides {@code kvm}): where they run, and the
 * kernel and initramfs they need, prepared on the host for the emulated KVM host.
 *
 * <p>Where {@code /dev/kvm} is KVM-PVM ({@link Kvm#emulatesGuestKernels()}), a stock kernel cannot boot natively,
 * but it boots under the emulated host's nested KVM; so the root pom's profile {@code linux-boot-emulated-pvm}
 * (activation: {@code /sys/module/kvm_pvm} exists) leaves the {@value #TAG} classes out of it-tests' own run, and
 * {@link EmulatedKvmEngine} runs them in the emulated host, while the other {@code kvm} classes stay native.
 */
final class LinuxBootRoute {
    static final String TAG = "linux-boot";
    private static final Logger LOG = LoggerFactory.getLogger(LinuxBootRoute.class);

    private LinuxBootRoute() {
    }

    /**
     * Whether the {@value #TAG} classes alone go to the emulated host: {@code /dev/kvm} is here (so the other
     * {@code kvm} classes run natively) but it is KVM-PVM.
     */
    static boolean alone() {
        return !KvmHost.leftOutOfModuleRuns() && Kvm.emulatesGuestKernels();
    }

    /**
     * Fill {@code cacheHome}{@code /actovisor} (the guest's {@code XDG_CACHE_HOME}, {@link KernelLocator#cacheDirectory()})
     * with the unpacked newest kernel and the {@code initrd = auto} initramfs, as the VM inside the emulated host
     * will look them up: unpacking and building there, under TCG, takes minutes, and the emulated host's view of the
     * host root is read-only. Nothing is prepared when the machine lacks a kernel or a static busybox (the tests then
     * report that themselves). Returns why it could not prepare, if it could not.
     */
    static Optional<String> prepare(Path cacheHome) {
        Optional<Path> kernel = KernelLocator.newestKernel();
        Optional<Path> busybox = Initramfs.findBusybox();
        if (kernel.isEmpty() || busybox.isEmpty()) {
            return Optional.of("no kernel in /boot or no static busybox");
        }
        Path cache = cacheHome.resolve("actovisor");
        long start = System.nanoTime();
        try {
            BzImage.load(kernel.get(), cache);
            Initramfs.cached(new Initramfs.Inputs(busybox.get(), Initramfs.moduleTreeOf(kernel.get()),
                    Initramfs.DEFAULT_MODULES), cache);
        } catch (RuntimeException e) {
            return Optional.of(e.getMessage());
        }
        LOG.info("emulated KVM host: the Linux guest's kernel and initramfs are ready in {} ({} ms)", cache,
                (System.nanoTime() - start) / 1_000_000);
        return Optional.empty();
    }
}
