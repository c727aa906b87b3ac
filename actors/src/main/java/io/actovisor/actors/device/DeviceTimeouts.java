package io.actovisor.actors.device;

import com.typesafe.config.Config;
import java.time.Duration;
import java.util.Objects;
import org.apache.pekko.actor.typed.ActorSystem;

/**
 * The waits along a guest access, all derived from one setting, {@code actovisor.timeouts.device-step}
 * ({@code step}), so that every outer wait is strictly longer than the wait inside it and the inner party always
 * answers (with a failure, if it must) before the outer one gives up:
 *
 * <pre>
 *   discard manager -> container, release       1 step   (DiscardManager.Settings, set by VmActor)
 *   balloon -> discard manager, a decision      2 steps  (BalloonActor)
 *   device -> container, one DMA transfer       3 steps  (DmaEngineActor, VirtioBlkActor)
 *   balloon -> discard manager, a reclaim       4 steps  (BalloonActor)
 *   virtio-balloon -> discard manager, restore  5 steps  (VirtioBalloonActor, a status write)
 *   virtio-balloon -> balloon, queue buffers    6 steps  (VirtioBalloonActor, a queue notify)
 *   vCPU -> device, one MMIO or port access     7 steps  (VcpuHandle)
 * </pre>
 *
 * With the default step of 5 s a vCPU waits at most 35 s for one access; a device that has not answered by then
 * is counted as failed and the guest reads all ones (a write is dropped). A discard manager built by hand (not by
 * {@code VmActor}) takes its release timeout from its settings: keep it below {@link #balloonDecision()}.
 */
public record DeviceTimeouts(Duration step) {
    /** The configuration key of the one setting. */
    public static final String KEY = "actovisor.timeouts.device-step";
    /** The default step, as in the actors' {@code reference.conf}. */
    public static final DeviceTimeouts DEFAULT = new DeviceTimeouts(Duration.ofSeconds(5));

    public DeviceTimeouts {
        Objects.requireNonNull(step, "step");
        if (step.isNegative() || step.isZero()) {
            throw new IllegalArgumentException(KEY + " must be positive, was " + step);
        }
    }

    /** The timeouts configured at {@link #KEY}. */
    public static DeviceTimeouts of(Config config) {
        return new DeviceTimeouts(config.getDuration(KEY));
    }

    /** The timeouts of {@code system}'s configuration. */
    public static DeviceTimeouts of(ActorSystem<?> system) {
        return of(system.settings().config());
    }

    /** The discard manager's wait for a coordinated container to unmap (or map again) blocks. */
    public Duration containerRelease() {
        return step;
    }

    /** The balloon's wait for the discard manager's decision on one discard. */
    public Duration balloonDecision() {
        return step.multipliedBy(2);
    }

    /**
     * A device's wait for one DMA transfer through its VFIO container (the DMA engine, virtio-blk): longer than a
     * release round (one step) the transfer may queue behind. The guest does not wait on it inside an access: it
     * polls, or is interrupted when the request completes, and a transfer that times out completes with an error.
     */
    public Duration deviceDma() {
        return step.multipliedBy(3);
    }

    /** The balloon's wait for the discard manager to map discarded blocks again (deflate). */
    public Duration balloonReclaim() {
        return step.multipliedBy(4);
    }

    /** The virtio-balloon device's wait for the discard manager to restore every block (reset, FEATURES_OK). */
    public Duration deviceRestore() {
        return step.multipliedBy(5);
    }

    /** The virtio-balloon device's wait for the balloon to inflate, deflate or take a free page report. */
    public Duration deviceOnBalloon() {
        return step.multipliedBy(6);
    }

    /** A vCPU's wait for a device to answer one MMIO or port access. */
    public Duration vcpuOnDevice() {
        return step.multipliedBy(7);
    }
}
