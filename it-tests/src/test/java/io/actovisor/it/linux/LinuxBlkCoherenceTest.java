package io.actovisor.it.linux;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.ConfigFactory;
import io.actovisor.actors.balloon.BalloonActor;
import io.actovisor.actors.balloon.BalloonSettings;
import io.actovisor.actors.blk.VirtioBlkActor;
import io.actovisor.actors.vm.VmActor;
import io.actovisor.actors.vm.VmTopology;
import io.actovisor.config.VmSpec;
import io.actovisor.config.VmSpecParser;
import io.actovisor.vmm.runtime.VmBuilder;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * Issue 19, item 3: the mission with a real guest. Stock Linux writes and checksums a pattern on {@code /dev/vda},
 * a virtio-blk RAM disk whose request buffers go through the VM's VFIO container on the {@code pinned} backend (the
 * same long-term pins a passthrough device's DMA uses), inflates the balloon to 90 % of its free memory, deflates,
 * and writes and checksums again. The host counts the guest pages the device moved data through after the deflate
 * that had been ballooned (the device's log of data-buffer frames intersected with the frames the guest inflated):
 * without such pages the run would prove nothing. With {@code discard = inhibit} the inflate is not discarded and the
 * checksums hold; with {@code unsafe-ignore-inhibitor} the discarded pages stay pinned, the device reads and writes
 * the old pages while the CPU has new ones, and the guest reads back other data (silent data loss, no error); with
 * {@code discard = coordinated} the blocks are unpinned before the discard and pinned again on the deflate, and the
 * checksums hold. One VM per test.
 */
@Tag("kvm")
@Tag("linux-boot")
@ExtendWith(EmulatedHostFaultRetry.class)
class LinuxBlkCoherenceTest implements EmulatedHostFaultRetry.SharedVm {
    private static final long MIB = 1 << 20;
    private static final int RAM_MIB = 128;
    private static final int DISK_MIB = 32;
    /** MiB of pattern written before and after the balloon cycle. */
    private static final int PATTERN_MIB = 12;

    private ActorTestKit kit;
    private LinuxVm vm;
    /** Every frame the guest's driver inflated (the balloon device's requests, tapped on their way). */
    private final Set<Long> inflated = ConcurrentHashMap.newKeySet();

    @BeforeEach
    void start() {
        LinuxVm.requireFacilities();
        LinuxVm.requireHardwareKvm();
        kit = ActorTestKit.create();
    }

    @AfterEach
    void stop() {
        if (vm != null && !vm.stopped.get()) {
            vm.close();
        }
        kit.shutdownTestKit();
    }

    static String definition(String name, String discard, boolean unsafe) {
        return """
                actovisor.vm {
                  name = %s
                  memory = [
                    { name = ram, base = 0, size = %d MiB }
                    { name = balloon-mmio, kind = mmio, base = "0xd0001000", size = 4 KiB, device = balloon }
                    { name = blk-mmio, kind = mmio, base = "0xd0002000", size = 4 KiB, device = blk }
                  ]
                  guest { kind = linux, kernel = auto, initrd = auto, cmdline = "%s" }
                  vfio.containers = [ { name = passthrough, backend = pinned, discard = %s,
                      groups = [ { id = nic0, attach-at-start = true } ] } ]
                  balloon { enabled = true, deflate-on-oom = true, stats-polling-interval = 1s,
                      mmio-base = "0xd0001000", unsafe-ignore-inhibitor = %s }
                  devices.blk { enabled = true, size-mib = %d, mmio-base = "0xd0002000", container = passthrough }
                  api.enabled = false
                }
                """.formatted(name, RAM_MIB, LinuxVm.CMDLINE, discard, unsafe, DISK_MIB);
    }

    /** A balloon in front of the real one that records every inflated frame. */
    private Behavior<BalloonActor.Command> tap(ActorRef<BalloonActor.Command> balloon) {
        return Behaviors.receive(BalloonActor.Command.class).onAnyMessage(command -> {
            if (command instanceof BalloonActor.Inflate inflate) {
                Arrays.stream(inflate.frames()).forEach(inflated::add);
            }
            balloon.tell(command);
            return Behaviors.same();
        }).build();
    }

    private LinuxVm boot(String name, String discard, boolean unsafe) {
        VmSpec spec = VmSpecParser.parse(ConfigFactory.parseString(definition(name, discard, unsafe)));
        VmTopology built = VmBuilder.topology(spec, BalloonSettings.DEFAULT);
        List<VmTopology.Device> devices = new ArrayList<>();
        for (VmTopology.Device d : built.devices()) {
            devices.add(d.role() != VmTopology.Device.Role.VIRTIO_BALLOON ? d : new VmTopology.Device(d.name(),
                    c -> Behaviors.setup(context -> d.factory().apply(new VmActor.Components(c.memory(),
                            java.util.Optional.of(context.spawn(tap(c.balloon().orElseThrow()), "tap")),
                            c.containers(), c.groups(), c.vcpus(), c.devices(), c.discardManager(),
                            c.guestMemory()))), d.role()));
        }
        VmTopology topology = new VmTopology(built.name(), built.memory(), built.regions(), built.balloon(),
                built.containers(), built.groups(), built.guest(), devices, built.scripted());
        long start = System.nanoTime();
        LinuxVm booted = new LinuxVm(kit, topology, name);
        return booted.awaitShell(start);
    }

    /** Before a test runs again after the emulated host's fault: a new test kit, nothing of the broken VM left. */
    @Override
    public void replaceVm() {
        stop();
        vm = null;
        inflated.clear();
        kit = ActorTestKit.create();
    }

    /** Write a fresh random pattern to /dev/vda at {@code mib}, drop the caches, read it back: both md5 sums. */
    private String[] writeAndCheck(String file, int mib) {
        String out = vm.run("dd if=/dev/urandom of=/tmp/" + file + " bs=1M count=" + PATTERN_MIB + " 2>/dev/null; "
                + "dd if=/tmp/" + file + " of=/dev/vda bs=1M seek=" + mib + " 2>/dev/null; sync; "
                + "echo 3 > /proc/sys/vm/drop_caches; "
                + "echo pattern $(md5sum < /tmp/" + file + "); "
                + "echo disk $(dd if=/dev/vda bs=1M skip=" + mib + " count=" + PATTERN_MIB + " 2>/dev/null | md5sum)",
                LinuxVm.COMMAND);
        Matcher p = Pattern.compile("pattern ([0-9a-f]{32})").matcher(out);
        Matcher d = Pattern.compile("disk ([0-9a-f]{32})").matcher(out);
        assertTrue(p.find() && d.find(), "the guest printed no checksums: " + out);
        vm.run("rm /tmp/" + file, LinuxVm.COMMAND);
        return new String[] {p.group(1), d.group(1)};
    }

    private long memFreeKib() {
        Matcher m = Pattern.compile("MemFree: +(\\d+) kB").matcher(vm.run("grep MemFree /proc/meminfo", LinuxVm.COMMAND));
        assertTrue(m.find());
        return Long.parseLong(m.group(1));
    }

    private VirtioBlkActor.DmaLog blkLog() {
        TestProbe<VirtioBlkActor.DmaLog> probe = kit.createTestProbe();
        vm.components.devices().get("blk").tell(new VirtioBlkActor.GetDmaLog(probe.ref()));
        return probe.receiveMessage();
    }

    private void clearBlkLog() {
        TestProbe<org.apache.pekko.Done> probe = kit.createTestProbe();
        vm.components.devices().get("blk").tell(new VirtioBlkActor.ClearDmaLog(probe.ref()));
        probe.receiveMessage();
    }

    /** What one scenario measured. */
    private record Outcome(String[] before, String[] after, long reusedFrames, long loggedFrames,
            BalloonActor.BalloonStatus inflatedStatus, VirtioBlkActor.DmaLog log) {
    }

    /** Boot, write and check, balloon 90 % of free memory in and out, write and check again. */
    private Outcome scenario(String name, String discard, boolean unsafe) {
        vm = boot(name, discard, unsafe);
        String modules = vm.run("cat /sys/bus/virtio/devices/*/device; ls /dev/vda", LinuxVm.COMMAND);
        assertTrue(modules.contains("0x0002") && modules.contains("/dev/vda"), "Linux found the disk: " + modules);
        String[] before = writeAndCheck("before", 0);
        long freeBytes = memFreeKib() * 1024;
        long target = freeBytes * 9 / 10 / (2 * MIB) * (2 * MIB) + 2 * MIB;
        long pages = target / 4096;
        long inflates = vm.vmstat("balloon_inflate");
        long deflates = vm.vmstat("balloon_deflate");
        vm.balloonTarget(target);
        vm.awaitVmstat("balloon_inflate", inflates + pages);
        BalloonActor.BalloonStatus inflatedStatus = vm.balloonStatus();
        vm.balloonTarget(0);
        vm.awaitVmstat("balloon_deflate", deflates + pages);
        clearBlkLog();
        String[] after = writeAndCheck("after", PATTERN_MIB);
        VirtioBlkActor.DmaLog log = blkLog();
        long reused = Arrays.stream(log.frames()).filter(inflated::contains).count();
        System.out.printf("Linux blk %s (discard = %s, unsafe-ignore-inhibitor = %s): free %d MiB, balloon %d MiB "
                + "(%d frames inflated; host: %d pages discarded, %d skipped, %d unsafe discards); checksums before "
                + "%s, after %s; after the deflate the device moved data through %d guest frames, %d of them "
                + "ballooned before; device: %d requests, %d errors, %d MiB in, %d MiB out, %d container faults%n",
                name, discard, unsafe, freeBytes / MIB, target / MIB, inflated.size(), inflatedStatus.pagesDiscarded(),
                inflatedStatus.pagesSkipped(), inflatedStatus.unsafeDiscards(),
                before[0].equals(before[1]) ? "match" : "DIFFER", after[0].equals(after[1]) ? "match" : "DIFFER",
                log.frames().length, reused, log.requests(), log.errors(), log.bytesIn() / MIB, log.bytesOut() / MIB,
                log.containerFaults());
        assertTrue(log.viaContainer());
        assertTrue(inflated.size() >= pages, "the host saw the inflate: " + inflated.size() + " frames");
        assertTrue(reused > 0, "no page the device used after the deflate had been ballooned: the run proves "
                + "nothing");
        assertEquals(before[0], before[1], "before the balloon cycle, /dev/vda holds what was written");
        return new Outcome(before, after, reused, log.frames().length, inflatedStatus, log);
    }

    @Test
    void withTheInhibitorTheInflateIsNotDiscardedAndTheDiskHoldsItsData() {
        Outcome o = scenario("blk-inhibit", "inhibit", false);
        assertTrue(o.inflatedStatus().pagesSkipped() > 0, "the inflate was held: " + o.inflatedStatus());
        assertEquals(0, o.inflatedStatus().pagesDiscarded());
        assertEquals(o.after()[0], o.after()[1], "after the balloon cycle, /dev/vda holds what was written");
        assertEquals(0, o.log().errors());
    }

    @Test
    void ignoringTheInhibitorLosesDataSilently() {
        Outcome o = scenario("blk-unsafe", "inhibit", true);
        assertTrue(o.inflatedStatus().unsafeDiscards() > 0, o.inflatedStatus().toString());
        assertNotEquals(o.after()[0], o.after()[1], "the device used the old pinned pages: the guest must read "
                + "back other data than it wrote");
        assertEquals(0, o.log().errors(), "and nothing reported an error");
    }

    @Test
    void coordinatedDiscardUnpinsBeforeDiscardingAndTheDiskHoldsItsData() {
        Outcome o = scenario("blk-coordinated", "coordinated", false);
        assertTrue(o.inflatedStatus().pagesDiscarded() > 0, "coordinated discards whole blocks: "
                + o.inflatedStatus());
        assertEquals(o.after()[0], o.after()[1], "after the balloon cycle, /dev/vda holds what was written");
        assertEquals(0, o.log().errors());
    }
}
