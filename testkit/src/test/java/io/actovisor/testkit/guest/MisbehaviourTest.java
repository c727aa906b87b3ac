package io.actovisor.testkit.guest;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ch.qos.logback.classic.Logger;
import ch.qos.logback.classic.spi.ILoggingEvent;
import ch.qos.logback.core.read.ListAppender;
import io.actovisor.actors.vm.VmActor;
import io.actovisor.devices.virtio.VirtioMmio;
import io.actovisor.testkit.ActovisorTest;
import io.actovisor.testkit.RunningVm;
import io.actovisor.testkit.ScriptedVm;
import java.util.List;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.slf4j.LoggerFactory;

/**
 * Each misbehaviour of a scripted guest against the virtio-balloon, and the device's answer: a clear reason and
 * DEVICE_NEEDS_RESET for a broken contract (or a refusal of the bad frames), while the VM and its guest keep running
 * and nothing leaks (the extension checks after each test).
 */
@ActovisorTest
class MisbehaviourTest {
    private final ActorTestKit kit;
    private final ListAppender<ILoggingEvent> deviceLog = new ListAppender<>();
    private final Logger mmioLogger = (Logger) LoggerFactory.getLogger(VirtioMmio.class);
    private final Logger balloonLogger = (Logger) LoggerFactory.getLogger(
            io.actovisor.actors.balloon.BalloonActor.class);

    MisbehaviourTest(ActorTestKit kit) {
        this.kit = kit;
    }

    @BeforeEach
    void captureDeviceLog() {
        deviceLog.start();
        mmioLogger.addAppender(deviceLog);
        balloonLogger.addAppender(deviceLog);
    }

    @AfterEach
    void releaseDeviceLog() {
        mmioLogger.detachAppender(deviceLog);
        balloonLogger.detachAppender(deviceLog);
    }

    /** Run {@code kind} in a fresh VM; the console line with the device's answer. */
    private String run(Misbehaviour.Kind kind, java.util.function.Consumer<RunningVm> check) {
        try (RunningVm vm = RunningVm.start(kit, ScriptedVm.named(kind.configName())
                .program(() -> Misbehaviour.of(kind)).build())) {
            String answer = vm.awaitLine("misbehaviour " + kind.configName() + ":");
            assertEquals(VmActor.State.RUNNING, vm.state(), "the VM keeps running");
            assertEquals(VmActor.GuestState.RUNNING, vm.guest().state(), "the guest keeps running");
            check.accept(vm);
            return answer;
        }
    }

    private List<String> deviceMessages() {
        return deviceLog.list.stream().map(ILoggingEvent::getFormattedMessage).toList();
    }

    private void expectNeedsReset(Misbehaviour.Kind kind, long status, String reason) {
        String answer = run(kind, vm -> assertEquals(1, vm.balloonDevice().eventFails(), "one contract violation"));
        assertEquals("misbehaviour " + kind.configName() + ": device status 0x" + Long.toHexString(status)
                + " (DEVICE_NEEDS_RESET)", answer);
        assertEquals(List.of("virtio device virtio-balloon needs a reset: " + reason), deviceMessages());
    }

    @Test
    void pfnsOutsideRamAreRefusedAndTheDeviceGoesOn() {
        String answer = run(Misbehaviour.Kind.PFNS_OUTSIDE_RAM, vm -> {
            assertEquals(0, vm.balloonDevice().eventFails());
            assertEquals(0, vm.balloonStatus().actualBytes(), "no frame was taken");
        });
        assertEquals("misbehaviour pfns-outside-ram: device status 0xf", answer);
        assertEquals(1, deviceMessages().size(), deviceMessages().toString());
        assertTrue(deviceMessages().get(0).matches("Balloon .*: the guest inflated 3 frames outside its RAM "
                + "\\(first 1024\\); ignored"), deviceMessages().get(0));
    }

    @Test
    void aDescriptorLoopNeedsAReset() {
        expectNeedsReset(Misbehaviour.Kind.DESCRIPTOR_LOOP, 0x4f,
                "queue 0: the chain at head 0 is longer than the queue (a descriptor loop)");
    }

    @Test
    void aLengthPastTheEndOfRamNeedsAReset() {
        expectNeedsReset(Misbehaviour.Kind.LENGTH_PAST_RAM, 0x4f,
                "queue 0: the descriptor 0 buffer [0x98000, +0x368004) is not in guest RAM");
    }

    @Test
    void aChainReachingOutsideRamNeedsAReset() {
        expectNeedsReset(Misbehaviour.Kind.CHAIN_OUTSIDE_RAM, 0x4f,
                "queue 0: the descriptor 1 buffer [0xc0000000, +0x1000) is not in guest RAM");
    }

    @Test
    void aNotifyAfterFeaturesOkButBeforeDriverOkIsServed() {
        // As QEMU does: Linux's virtio_balloon kicks its statistics queue before DRIVER_OK.
        String answer = run(Misbehaviour.Kind.NOTIFY_BEFORE_DRIVER_OK,
                vm -> assertEquals(0, vm.balloonDevice().eventFails(), "no contract violation"));
        assertEquals("misbehaviour notify-before-driver-ok: device status 0xb", answer);
        assertEquals(List.of(), deviceMessages());
    }

    @Test
    void anUnofferedFeatureIsRefusedAtFeaturesOk() {
        expectNeedsReset(Misbehaviour.Kind.UNOFFERED_FEATURE, 0x43,
                "the driver accepted features 0x80 the device did not offer");
    }

    @Test
    void aQueueOfAFeatureNotNegotiatedIsNotReady() {
        expectNeedsReset(Misbehaviour.Kind.FEATURES_IGNORED, 0x4f, "the driver notified queue 2, which is not ready");
    }

    @Test
    void aResetInTheMiddleOfARequestLeavesADeviceThatStartsAgain() {
        String answer = run(Misbehaviour.Kind.RESET_MID_REQUEST, vm -> {
            assertEquals(0, vm.balloonDevice().eventFails());
            assertEquals(0, vm.balloonStatus().actualBytes(), "the frames inflated before the reset came back");
        });
        assertEquals("misbehaviour reset-mid-request: device status 0xf; after the reset 0x0, started again and "
                + "deflated 8 frames", answer);
    }

    @Test
    void anUnknownMisbehaviourNamesWhatWasAsked() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> Misbehaviour.kind("double-free"));
        assertTrue(e.getMessage().startsWith("no misbehaviour called 'double-free'; there are [pfns-outside-ram, "),
                e.getMessage());
    }
}
