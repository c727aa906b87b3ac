package io.actovisor.testkit.guest;

import io.actovisor.devices.balloon.VirtioBalloon;
import io.actovisor.devices.guest.scripted.BalloonDriver;
import io.actovisor.devices.guest.scripted.GuestLayout;
import io.actovisor.devices.guest.scripted.GuestMachine;
import io.actovisor.devices.guest.scripted.GuestProgram;
import io.actovisor.devices.guest.scripted.RegisterBus;
import io.actovisor.devices.guest.scripted.ScriptedGuestException;
import io.actovisor.devices.guest.scripted.SplitQueueDriver;
import io.actovisor.devices.guest.scripted.VirtioMmioDriver;
import io.actovisor.devices.virtio.VirtioMmio;
import io.actovisor.devices.virtio.Virtqueue;
import io.actovisor.memory.RegionKind;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;

/**
 * A scripted guest that breaks the virtio contract of the VM's balloon on purpose, once, in its first round, then
 * prints the device's answer on the console and idles (the VM keeps running):
 * {@code misbehaviour <name>: device status 0x<status>}, followed by {@code (DEVICE_NEEDS_RESET)} when the device
 * stopped trusting the driver. Each {@link Kind} is one way a buggy or hostile driver can go wrong.
 */
public final class Misbehaviour implements GuestProgram {
    /** The ways to misbehave. */
    public enum Kind {
        /** Inflate frame numbers beyond the end of guest RAM. */
        PFNS_OUTSIDE_RAM("pfns-outside-ram"),
        /** Offer a chain whose descriptors point at each other for ever. */
        DESCRIPTOR_LOOP("descriptor-loop"),
        /** Offer a buffer whose length runs past the end of guest RAM. */
        LENGTH_PAST_RAM("length-past-ram"),
        /** Offer a chain whose second buffer lies outside guest RAM (in the MMIO hole). */
        CHAIN_OUTSIDE_RAM("chain-outside-ram"),
        /** Notify a queue after FEATURES_OK and queue setup, but before DRIVER_OK. */
        NOTIFY_BEFORE_DRIVER_OK("notify-before-driver-ok"),
        /** Reset the device (status 0) while an inflate request is still being handled; then start over. */
        RESET_MID_REQUEST("reset-mid-request"),
        /** Accept a feature the device did not offer. */
        UNOFFERED_FEATURE("unoffered-feature"),
        /** Negotiate without STATS_VQ, then change the features after FEATURES_OK and use the statistics queue. */
        FEATURES_IGNORED("features-ignored");

        private final String configName;

        Kind(String configName) {
            this.configName = configName;
        }

        /** The name printed on the console. */
        public String configName() {
            return configName;
        }
    }

    /** Frames the reset-mid-request script inflates (from the start of the work area). */
    public static final int RESET_FRAMES = 8;
    /** A guest-physical address in the MMIO hole, never RAM in a scripted VM. */
    public static final long OUTSIDE_RAM = 0xc0000000L;

    private final Kind kind;
    private BalloonDriver balloon;

    private Misbehaviour(Kind kind) {
        this.kind = kind;
    }

    /** A program that misbehaves as {@code kind} says. */
    public static Misbehaviour of(Kind kind) {
        return new Misbehaviour(kind);
    }

    /** Every kind of misbehaviour, by its console name (for a misbehaviour named in a test's parameters). */
    public static Kind kind(String name) {
        for (Kind k : Kind.values()) {
            if (k.configName().equals(name)) {
                return k;
            }
        }
        throw new IllegalArgumentException("no misbehaviour called '" + name + "'; there are "
                + java.util.Arrays.stream(Kind.values()).map(Kind::configName).toList());
    }

    @Override
    public String name() {
        return "misbehaviour-" + kind.configName();
    }

    @Override
    public CompletionStage<Void> boot(GuestMachine machine) {
        RegisterBus bus = machine.device("balloon").orElseThrow(() -> new ScriptedGuestException(
                "a misbehaving balloon driver needs a device called 'balloon'; the VM has " + machine.devices()));
        balloon = new BalloonDriver(machine.memoryView(), bus, 0);
        return switch (kind) {
            case NOTIFY_BEFORE_DRIVER_OK, UNOFFERED_FEATURE, FEATURES_IGNORED -> CompletableFuture.completedFuture(null);
            default -> balloon.start();
        };
    }

    @Override
    public CompletionStage<Optional<Duration>> round(GuestMachine machine, long round) {
        if (round > 1) {
            return CompletableFuture.completedFuture(Optional.of(Duration.ofMinutes(10)));
        }
        VirtioMmioDriver transport = balloon.transport();
        CompletionStage<String> act = switch (kind) {
            case PFNS_OUTSIDE_RAM -> {
                long ramFrames = ramBytes(machine) / GuestLayout.PAGE;
                yield balloon.send(VirtioBalloon.INFLATE_QUEUE, new long[] {ramFrames, ramFrames + 1, 0xfffffL})
                        .thenApply(v -> "");
            }
            case DESCRIPTOR_LOOP -> {
                SplitQueueDriver q = balloon.queue(VirtioBalloon.INFLATE_QUEUE);
                q.writeDescriptor(0, GuestLayout.PFN_BUFFER, 4, Virtqueue.F_NEXT, 1);
                q.writeDescriptor(1, GuestLayout.PFN_BUFFER, 4, Virtqueue.F_NEXT, 0);
                q.publish(0);
                yield transport.notify(VirtioBalloon.INFLATE_QUEUE).thenApply(v -> "");
            }
            case LENGTH_PAST_RAM -> {
                SplitQueueDriver q = balloon.queue(VirtioBalloon.INFLATE_QUEUE);
                q.writeDescriptor(0, GuestLayout.PFN_BUFFER, (int) (ramBytes(machine) - GuestLayout.PFN_BUFFER + 4),
                        0, 0);
                q.publish(0);
                yield transport.notify(VirtioBalloon.INFLATE_QUEUE).thenApply(v -> "");
            }
            case CHAIN_OUTSIDE_RAM -> {
                SplitQueueDriver q = balloon.queue(VirtioBalloon.INFLATE_QUEUE);
                q.writeDescriptor(0, GuestLayout.PFN_BUFFER, 4, Virtqueue.F_NEXT, 1);
                q.writeDescriptor(1, OUTSIDE_RAM, (int) GuestLayout.PAGE, 0, 0);
                q.publish(0);
                yield transport.notify(VirtioBalloon.INFLATE_QUEUE).thenApply(v -> "");
            }
            case NOTIFY_BEFORE_DRIVER_OK -> upToFeaturesOk(transport, VirtioMmio.F_VERSION_1)
                    .thenCompose(v -> transport.setUpQueue(0, balloon.queue(0)))
                    .thenCompose(v -> transport.notify(0)).thenApply(v -> "");
            case RESET_MID_REQUEST -> resetMidRequest(machine, transport);
            case UNOFFERED_FEATURE -> upToFeaturesOk(transport, VirtioMmio.F_VERSION_1 | 1L << 7)
                    .thenApply(v -> "");
            case FEATURES_IGNORED -> transport.initialize(VirtioBalloon.DEVICE_ID, 0,
                    List.of(balloon.queue(0), balloon.queue(1)))
                    .thenCompose(v -> transport.writeDriverFeatures(VirtioMmio.F_VERSION_1 | VirtioBalloon.F_STATS_VQ))
                    .thenCompose(v -> transport.notify(VirtioBalloon.STATS_QUEUE)).thenApply(v -> "");
        };
        return act.thenCompose(extra -> transport.status().thenApply(status -> {
            boolean needsReset = (status & VirtioMmio.S_DEVICE_NEEDS_RESET) != 0;
            machine.console("misbehaviour " + kind.configName() + ": device status 0x" + Long.toHexString(status)
                    + (needsReset ? " (DEVICE_NEEDS_RESET)" : "") + extra);
            return Optional.of(Duration.ofMinutes(10));
        }));
    }

    /** Reset, ACKNOWLEDGE, DRIVER, accept {@code features}, FEATURES_OK: the handshake up to queue setup. */
    private static CompletionStage<Void> upToFeaturesOk(VirtioMmioDriver transport, long features) {
        int ackDriver = VirtioMmio.S_ACKNOWLEDGE | VirtioMmio.S_DRIVER;
        return transport.reset().thenCompose(v -> transport.setStatus(ackDriver))
                .thenCompose(v -> transport.writeDriverFeatures(features))
                .thenCompose(v -> transport.setStatus(ackDriver | VirtioMmio.S_FEATURES_OK));
    }

    /**
     * Offer an inflate of {@link #RESET_FRAMES} frames, and write status 0 right behind the notify without waiting
     * for it; then read the status the reset left, start the driver again and take the frames back.
     */
    private CompletionStage<String> resetMidRequest(GuestMachine machine, VirtioMmioDriver transport) {
        long first = machine.layout().workBase() / GuestLayout.PAGE;
        java.nio.ByteBuffer pfns = java.nio.ByteBuffer.allocate(4 * RESET_FRAMES)
                .order(java.nio.ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < RESET_FRAMES; i++) {
            pfns.putInt((int) (first + i));
        }
        machine.memory().write(new io.actovisor.memory.GuestAddress(GuestLayout.PFN_BUFFER), pfns.array());
        balloon.queue(VirtioBalloon.INFLATE_QUEUE).add(List.of(new SplitQueueDriver.Buffer(GuestLayout.PFN_BUFFER,
                4 * RESET_FRAMES, false)));
        CompletionStage<Void> notify = transport.notify(VirtioBalloon.INFLATE_QUEUE);
        CompletionStage<Void> reset = transport.reset();
        return notify.thenCombine(reset, (a, b) -> null).thenCompose(v -> transport.status()).thenCompose(afterReset -> {
            balloon = new BalloonDriver(machine.memoryView(), transport.bus(), 0);
            return balloon.start().thenCompose(v -> balloon.deflate(first, RESET_FRAMES))
                    .thenApply(v -> "; after the reset 0x" + Long.toHexString(afterReset)
                            + ", started again and deflated " + RESET_FRAMES + " frames");
        });
    }

    private static long ramBytes(GuestMachine machine) {
        return machine.memory().view().sections().stream().filter(s -> s.kind() == RegionKind.RAM)
                .mapToLong(s -> s.range().size()).sum();
    }
}
