package io.actovisor.testkit;

import io.actovisor.actors.balloon.BalloonActor;
import io.actovisor.actors.balloon.VirtioBalloonActor;
import io.actovisor.actors.events.ActovisorEvent;
import io.actovisor.actors.vm.VmActor;
import io.actovisor.actors.vm.VmTopology;
import java.time.Duration;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.FishingOutcomes;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.eventstream.EventStream;

/**
 * A started VM in a test: its actor, its components and its console, with synchronous helpers that wait (never
 * sleep) for what the test expects. {@link #close} shuts the VM down and waits until its actor has stopped.
 */
public final class RunningVm implements AutoCloseable {
    /** How long a helper waits for an answer or a console line. */
    public static final Duration TIMEOUT = Duration.ofSeconds(20);

    private final ActorTestKit kit;
    private final String name;
    private final ActorRef<VmActor.Command> vm;
    private final VmActor.Components components;
    private final TestProbe<ActovisorEvent.GuestConsoleLine> console;

    private RunningVm(ActorTestKit kit, String name, ActorRef<VmActor.Command> vm, VmActor.Components components,
            TestProbe<ActovisorEvent.GuestConsoleLine> console) {
        this.kit = kit;
        this.name = name;
        this.vm = vm;
        this.components = components;
        this.console = console;
    }

    /** Spawn a VM for {@code topology} and start it; fails the test with the VM's reason if it cannot start. */
    public static RunningVm start(ActorTestKit kit, VmTopology topology) {
        TestProbe<ActovisorEvent.GuestConsoleLine> console = kit.createTestProbe();
        kit.system().eventStream().tell(new EventStream.Subscribe<>(ActovisorEvent.GuestConsoleLine.class,
                console.ref()));
        ActorRef<VmActor.Command> vm = kit.spawn(VmActor.create(topology), topology.name());
        TestProbe<VmActor.StartResult> started = kit.createTestProbe();
        vm.tell(new VmActor.Start(started.ref()));
        VmActor.StartResult result = started.receiveMessage(TIMEOUT);
        if (result instanceof VmActor.StartFailed failed) {
            throw new AssertionError("VM " + topology.name() + " failed to start: " + failed.reason());
        }
        return new RunningVm(kit, topology.name(), vm, ((VmActor.Started) result).components(), console);
    }

    public ActorRef<VmActor.Command> ref() {
        return vm;
    }

    public VmActor.Components components() {
        return components;
    }

    /** Wait for the next console line of this VM's guest that starts with {@code prefix}; earlier lines are skipped. */
    public String awaitLine(String prefix) {
        return console.fishForMessage(TIMEOUT, "a console line of " + name + " starting with '" + prefix + "'",
                line -> line.device().equals(name) && line.line().startsWith(prefix) ? FishingOutcomes.complete()
                        : FishingOutcomes.continueAndIgnore()).get(0).line();
    }

    /** The guest's status now. */
    public VmActor.GuestInfo guest() {
        TestProbe<VmActor.GuestInfo> probe = kit.createTestProbe();
        vm.tell(new VmActor.GetGuest(probe.ref()));
        return probe.receiveMessage(TIMEOUT);
    }

    /** Wait until the guest is in {@code state}; its status then. */
    public VmActor.GuestInfo awaitGuest(VmActor.GuestState state) {
        TestProbe<VmActor.GuestInfo> probe = kit.createTestProbe();
        return probe.awaitAssert(TIMEOUT, () -> {
            VmActor.GuestInfo info = guest();
            if (info.state() != state) {
                throw new AssertionError("the guest is " + info.state() + ", expected " + state);
            }
            return info;
        });
    }

    /** The VM's lifecycle state now. */
    public VmActor.State state() {
        TestProbe<VmActor.VmInfo> probe = kit.createTestProbe();
        vm.tell(new VmActor.GetInfo(probe.ref()));
        return probe.receiveMessage(TIMEOUT).state();
    }

    /** Set the balloon's target and wait for the answer. */
    public BalloonActor.TargetResult setBalloonTarget(long bytes) {
        TestProbe<BalloonActor.TargetResult> probe = kit.createTestProbe();
        components.balloon().orElseThrow(() -> new AssertionError("VM " + name + " has no balloon"))
                .tell(new BalloonActor.SetTarget(bytes, probe.ref()));
        return probe.receiveMessage(TIMEOUT);
    }

    /** The balloon's status. */
    public BalloonActor.BalloonStatus balloonStatus() {
        TestProbe<BalloonActor.BalloonStatus> probe = kit.createTestProbe();
        components.balloon().orElseThrow().tell(new BalloonActor.GetStatus(probe.ref()));
        return probe.receiveMessage(TIMEOUT);
    }

    /** The virtio-balloon device's counters (contract violations among them). */
    public VirtioBalloonActor.Statistics balloonDevice() {
        TestProbe<VirtioBalloonActor.Statistics> probe = kit.createTestProbe();
        components.devices().get("balloon").tell(new VirtioBalloonActor.GetStatistics(probe.ref()));
        return probe.receiveMessage(TIMEOUT);
    }

    /** Send {@code to} the message {@code message} makes of a reply address, and wait for the reply. */
    public <R> R ask(Class<R> type, java.util.function.Function<ActorRef<R>, ?> message, ActorRef<?> to) {
        TestProbe<R> probe = kit.createTestProbe(type);
        @SuppressWarnings("unchecked")
        ActorRef<Object> target = (ActorRef<Object>) to;
        target.tell(message.apply(probe.ref()));
        return probe.expectMessageClass(type, TIMEOUT);
    }

    /** Shut the VM down and wait until it has stopped and released everything. */
    @Override
    public void close() {
        TestProbe<VmActor.ActionResult> probe = kit.createTestProbe();
        vm.tell(new VmActor.Shutdown(probe.ref()));
        probe.expectTerminated(vm, TIMEOUT);
        kit.system().eventStream().tell(new EventStream.Unsubscribe<>(console.ref()));
    }
}
