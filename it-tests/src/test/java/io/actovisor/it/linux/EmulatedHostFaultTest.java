package io.actovisor.it.linux;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.platform.engine.discovery.DiscoverySelectors.selectClass;

import io.actovisor.memory.AddressRange;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.platform.engine.TestExecutionResult;
import org.junit.platform.launcher.TestExecutionListener;
import org.junit.platform.launcher.TestIdentifier;
import org.junit.platform.launcher.core.LauncherDiscoveryRequestBuilder;
import org.junit.platform.launcher.core.LauncherFactory;

/**
 * Telling the emulated KVM host's fault from a guest's own stall, and running a test again only for that fault. The
 * symbols are those of a run of 30 Nov: the stalled guest's rip was {@code 0xffffffffc049520c}, and the emulated
 * host's kvm_amd has {@code __svm_vcpu_run} at offset 0x140f0 of its text with the instruction after VMRUN 0x11c
 * into it (objdump of the Debian 6.1 kvm-amd.ko), so a module loaded at {@code 0xffffffffc0481000} puts that
 * instruction at offset 0x20c of a page, as every stall showed.
 */
class EmulatedHostFaultTest {
    private static final long MIB = 1 << 20;

    private static Optional<AddressRange> host() {
        GuestSymbols host = GuestSymbols.ofKernel(java.nio.file.Path.of("/nonexistent"));
        host.add("""
                ffffffffc0481000 t svm_vcpu_free\t[kvm_amd]
                ffffffffc04950f0 T __svm_vcpu_run\t[kvm_amd]
                ffffffffc0495300 T __svm_sev_es_vcpu_run\t[kvm_amd]
                """);
        return host.extent(EmulatedHostFault.WORLD_SWITCH, "kvm_amd");
    }

    @Test
    void theHostsWorldSwitchWithACr3OutsideGuestRamIsTheEmulatedHostsFault() {
        Optional<String> leak = EmulatedHostFault.diagnose(0xffffffffc049520cL, 0x10089e000L, 128 * MIB, host());
        assertTrue(leak.isPresent());
        assertTrue(leak.get().contains("__svm_vcpu_run+0x11c [kvm_amd]"), leak.get());
        assertTrue(leak.get().contains("0x10089e000") && leak.get().contains("128 MiB"), leak.get());
    }

    @Test
    void aGuestStallAnywhereElseIsNot() {
        Optional<AddressRange> host = host();
        assertEquals(Optional.empty(), EmulatedHostFault.diagnose(0xffffffffc049520cL, 0x2a10000L, 128 * MIB, host),
                "CR3 inside the guest's RAM: the guest's own page tables");
        assertEquals(Optional.empty(), EmulatedHostFault.diagnose(0xffffffffc0495310L, 0x10089e000L, 128 * MIB, host),
                "a rip in another host function");
        assertEquals(Optional.empty(), EmulatedHostFault.diagnose(0xffffffff81a5a1a9L, 0x10089e000L, 128 * MIB,
                host), "a rip before every host module symbol");
        assertEquals(Optional.empty(), EmulatedHostFault.diagnose(0xffffffffc049520cL, 0x7fff000L, 128 * MIB, host),
                "the guest's last RAM page");
        assertEquals(Optional.empty(), EmulatedHostFault.diagnose(0xffffffffc049520cL, 0x10089e000L, 128 * MIB,
                GuestSymbols.ofKernel(java.nio.file.Path.of("/nonexistent")).extent(EmulatedHostFault.WORLD_SWITCH,
                        "kvm_amd")), "no host symbols, no proof");
        assertTrue(EmulatedHostFault.diagnose(0xffffffffc049520cL, 0x8000000L, 128 * MIB, host).isPresent(),
                "the first page above the guest's RAM");
    }

    @Test
    void aTracedGuestEntryAtTheHostsWorldSwitchIsTheProof() {
        long start = 0xffffffffc05b1170L;
        AddressRange worldSwitch = AddressRange.of(start, 0x210);
        long after = start + 0x9c;
        java.util.List<String> guest = java.util.List.of(
                "vcpu-linux-gues-187 [001] d.... 60.120001: kvm_entry: vcpu 0, rip 0xffffffff81a5a1a9",
                "vcpu-linux-gues-187 [001] d.... 60.120020: kvm_exit: vcpu 0 reason EXIT_IOIO rip 0xffffffff81a5a1b0 "
                        + "info1 0x3f80010 info2 0x0 intr_info 0x0 error_code 0x0");
        assertEquals(Optional.empty(), WorldSwitchTrace.entryIn(guest, worldSwitch, after));
        java.util.List<String> leaked = new java.util.ArrayList<>(guest);
        leaked.add("vcpu-linux-gues-187 [001] d.... 60.120031: kvm_entry: vcpu 0, rip 0xffffffffc05b120c");
        String proof = WorldSwitchTrace.entryIn(leaked, worldSwitch, after).orElseThrow();
        assertTrue(proof.contains("__svm_vcpu_run+0x9c [kvm_amd] (the instruction after its VMRUN)"), proof);
        assertTrue(WorldSwitchTrace.entryIn(java.util.List.of("x: kvm_entry: vcpu 0, rip 0xffffffffc05b1180"),
                worldSwitch, after).orElseThrow().contains("__svm_vcpu_run+0x10 [kvm_amd]: its"),
                "anywhere in the world switch, named by its offset");
        assertEquals(Optional.empty(), WorldSwitchTrace.entryIn(java.util.List.of(
                "x: kvm_entry: vcpu 0, rip 0xffffffffc05b1380"), worldSwitch, after), "the next function");
        assertEquals(Optional.empty(), WorldSwitchTrace.entryIn(java.util.List.of(
                "x: kvm_exit: vcpu 0 reason EXIT_NPF rip 0xffffffffc05b120c"), worldSwitch, after),
                "an exit is no entry");
    }

    /**
     * The instruction after the VMRUN in kvm-amd.ko's {@code __svm_vcpu_run}, read from the module file of the kernel
     * the emulated KVM host boots (the machine's newest {@code /boot/vmlinuz-*}, the guests' kernel too): for Debian's
     * 6.1.0-57, objdump shows {@code __svm_vcpu_run} at 0x80 and {@code vmrun} at 0x119 of {@code .noinstr.text}.
     */
    @Test
    void theInstructionAfterVmrunIsFoundInTheModuleFile() {
        var kernel = LinuxVm.newestKernel();
        java.nio.file.Path ko = kernel.map(k -> io.actovisor.devices.boot.linux.Initramfs.moduleTreeOf(k)
                .resolve("kernel/arch/x86/kvm/kvm-amd.ko")).orElse(java.nio.file.Path.of("/nonexistent"));
        io.actovisor.memory.testing.NativeRequirement.require("an uncompressed kvm-amd.ko of the kernel in /boot "
                + "(Debian package linux-image-amd64)", java.nio.file.Files.isReadable(ko) ? Optional.empty()
                        : Optional.of("no " + ko));
        var offset = WorldSwitchTrace.afterVmrun(ko);
        assertTrue(offset.isPresent(), "a vmrun in " + EmulatedHostFault.WORLD_SWITCH + " of " + ko);
        if (ko.toString().contains("/6.1.0-57-amd64/")) {
            assertEquals(0x9c, offset.getAsLong(), "0x119 + 3 - 0x80");
        }
        assertTrue(WorldSwitchTrace.afterVmrun(java.nio.file.Path.of("/proc/sys/kernel/osrelease")).isEmpty(),
                "not an ELF file");
        assertTrue(WorldSwitchTrace.afterVmrun(java.nio.file.Path.of("/nonexistent")).isEmpty());
    }

    @Test
    void onlyTheFaultRunsATestAgainAndOnlyTwicePerClass() {
        Shared.replaced = 0;
        Shared.calls.clear();
        List<String> outcomes = new ArrayList<>();
        LauncherFactory.create().execute(LauncherDiscoveryRequestBuilder.request().selectors(selectClass(Shared.class))
                .build(), new TestExecutionListener() {
                    @Override
                    public void executionFinished(TestIdentifier id, TestExecutionResult result) {
                        if (id.isTest()) {
                            outcomes.add(id.getDisplayName() + " " + result.getStatus());
                        }
                    }
                });
        assertEquals(List.of("faultThenPass() SUCCESSFUL", "realFailure() FAILED", "faultEveryTime() FAILED"),
                outcomes);
        assertEquals(List.of("faultThenPass", "faultThenPass", "realFailure", "faultEveryTime", "faultEveryTime"),
                Shared.calls, "the fault runs a test again, a real failure does not, the third fault fails");
        assertEquals(2, Shared.replaced, "the shared VM was replaced before each second run");
    }

    /** Run only through the launcher above (surefire skips nested classes). */
    @ExtendWith(EmulatedHostFaultRetry.class)
    @TestMethodOrder(MethodOrderer.OrderAnnotation.class)
    static class Shared implements EmulatedHostFaultRetry.SharedVm {
        static int replaced;
        static final List<String> calls = new ArrayList<>();

        @Override
        public void replaceVm() {
            replaced++;
        }

        @Test
        @Order(1)
        void faultThenPass() {
            calls.add("faultThenPass");
            if (calls.size() == 1) {
                throw new EmulatedHostFault("first run");
            }
        }

        @Test
        @Order(2)
        void realFailure() {
            calls.add("realFailure");
            throw new AssertionError("the guest's own failure");
        }

        @Test
        @Order(3)
        void faultEveryTime() {
            calls.add("faultEveryTime");
            throw new AssertionError("wrapped", new EmulatedHostFault("again"));
        }
    }
}
