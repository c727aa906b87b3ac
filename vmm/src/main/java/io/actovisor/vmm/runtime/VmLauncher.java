package io.actovisor.vmm.runtime;

import com.typesafe.config.Config;
import io.actovisor.actors.events.ActovisorEvent;
import io.actovisor.actors.vm.VmActor;
import io.actovisor.actors.vm.VmTopology;
import io.actovisor.vmm.api.ApiServer;
import io.actovisor.vmm.api.ApiAccess;
import io.actovisor.vmm.api.model.VmConfig;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.Terminated;
import org.apache.pekko.actor.typed.eventstream.EventStream;
import org.apache.pekko.actor.typed.javadsl.AskPattern;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.http.javadsl.ServerBinding;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Runs one VM in its own actor system until it stops: start the VM, bind the management API, then wait for the
 * guest to halt, a signal (SIGINT, SIGTERM) or an API shutdown, and tear everything down.
 */
public final class VmLauncher {
    private static final Logger LOG = LoggerFactory.getLogger(VmLauncher.class);
    private static final Duration ASK_TIMEOUT = Duration.ofSeconds(10);
    private static final Duration START_TIMEOUT = Duration.ofMinutes(2);
    private static final Duration TEARDOWN_TIMEOUT = Duration.ofSeconds(30);

    /** Where and how the API listens; every request must carry {@code token}. */
    public record Api(boolean enabled, String host, int port, boolean allowRemote, String token) {
    }

    private VmLauncher() {
    }

    /**
     * Run {@code topology} until the VM stops. {@code out} gets what a user needs (the API address, the guest's
     * console); errors go to {@code err}.
     *
     * @return 0 after a clean stop, 1 if the VM could not start or the API could not bind
     */
    public static int run(VmTopology topology, Map<String, String> groupContainers, VmConfig vmConfig, Api api,
            long initialTargetBytes, Config config, PrintStream out, PrintStream err) {
        CompletableFuture<ActorRef<VmActor.Command>> vmRef = new CompletableFuture<>();
        ActorSystem<Void> system = ActorSystem.create(guardian(topology, vmRef), "actovisor", config);
        AtomicBoolean stopping = new AtomicBoolean();
        // A signal during start-up stops the VM while the start is still under way; that is a clean stop, not a
        // failure of whatever start step the teardown interrupted.
        AtomicBoolean signalled = new AtomicBoolean();
        AtomicReference<Path> accessFile = new AtomicReference<>();
        Thread hook = new Thread(() -> {
            if (stopping.compareAndSet(false, true)) {
                LOG.info("Signal received: shutting down VM {}", topology.name());
                vmRef.thenAccept(vm -> vm.tell(new VmActor.Shutdown(system.ignoreRef())));
                awaitTermination(system);
            }
            removeAccessFile(accessFile);
        }, "actovisor-shutdown");
        Runtime.getRuntime().addShutdownHook(hook);
        // SIGINT and SIGTERM start an orderly shutdown; the main thread then returns and the process exits 0.
        for (String name : new String[] {"INT", "TERM"}) {
            try {
                sun.misc.Signal.handle(new sun.misc.Signal(name), signal -> {
                    LOG.info("SIG{} received: shutting down VM {}", name, topology.name());
                    signalled.set(true);
                    vmRef.thenAccept(vm -> vm.tell(new VmActor.Shutdown(system.ignoreRef())));
                });
            } catch (IllegalArgumentException unavailable) {
                LOG.debug("cannot handle SIG{} here; the shutdown hook still tears down", name);
            }
        }
        try {
            ActorRef<VmActor.Command> vm = vmRef.join();
            VmActor.StartResult start = AskPattern.<VmActor.Command, VmActor.StartResult>ask(vm, VmActor.Start::new,
                    START_TIMEOUT, system.scheduler()).toCompletableFuture().get(START_TIMEOUT.toMillis() + 1000,
                    TimeUnit.MILLISECONDS);
            if (start instanceof VmActor.StartFailed failed) {
                err.println("actovisor run: VM " + topology.name() + " failed to start: " + failed.reason());
                awaitTermination(system);
                return 1;
            }
            VmActor.Components components = ((VmActor.Started) start).components();
            out.println("VM " + topology.name() + " started");
            if (topology.guest().flatMap(VmTopology.Guest::linux).isPresent()) {
                LinuxConsole.attach(system, components.devices().get("console"), System.in, out);
            } else {
                streamConsole(system, out);
            }
            if (initialTargetBytes > 0 && components.balloon().isPresent()) {
                components.balloon().get().tell(new io.actovisor.actors.balloon.BalloonActor.SetTarget(
                        initialTargetBytes, system.ignoreRef()));
            }
            if (api.enabled()) {
                VmRuntime runtime = new VmRuntime(system, vm, components, groupContainers, vmConfig, ASK_TIMEOUT);
                ServerBinding binding;
                try {
                    binding = ApiServer.bind(system, runtime, api.host(), api.port(), api.allowRemote(), api.token(),
                            Optional.of(ApiAccess.directory(System.getenv()).resolve(topology.name() + ".prom")))
                            .toCompletableFuture().get(30, TimeUnit.SECONDS);
                } catch (java.util.concurrent.ExecutionException e) {
                    if (signalled.get()) {
                        return stoppedBySignal(system, topology, out);
                    }
                    err.println("actovisor run: cannot bind the API on " + api.host() + ":" + api.port() + ": "
                            + e.getCause().getMessage());
                    vm.tell(new VmActor.Shutdown(system.ignoreRef()));
                    awaitTermination(system);
                    return 1;
                }
                InetSocketAddress at = binding.localAddress();
                String url = "http://" + at.getHostString() + ":" + at.getPort();
                Path dir = ApiAccess.directory(System.getenv());
                try {
                    accessFile.set(new ApiAccess(topology.name(), url, api.token(), ProcessHandle.current().pid())
                            .write(dir));
                } catch (java.io.IOException e) {
                    err.println("actovisor run: cannot write the API access file in " + dir + ": " + e.getMessage());
                    vm.tell(new VmActor.Shutdown(system.ignoreRef()));
                    awaitTermination(system);
                    return 1;
                }
                out.println("API listening on " + url + " (URL and token in " + accessFile.get() + ")");
            }
            out.flush();
            system.getWhenTerminated().toCompletableFuture().join();
            out.println("VM " + topology.name() + " stopped");
            return 0;
        } catch (IllegalArgumentException | IllegalStateException e) {
            if (signalled.get()) {
                return stoppedBySignal(system, topology, out);
            }
            err.println("actovisor run: " + e.getMessage());
            system.terminate();
            awaitTermination(system);
            return 1;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return 1;
        } catch (java.util.concurrent.ExecutionException | TimeoutException e) {
            if (signalled.get()) {
                return stoppedBySignal(system, topology, out);
            }
            err.println("actovisor run: VM " + topology.name() + " did not start: " + e);
            system.terminate();
            awaitTermination(system);
            return 1;
        } finally {
            removeAccessFile(accessFile);
            if (!stopping.get()) {
                try {
                    Runtime.getRuntime().removeShutdownHook(hook);
                } catch (IllegalStateException shuttingDown) {
                    // The JVM is already exiting; the hook does the teardown.
                }
            }
        }
    }

    private static void removeAccessFile(AtomicReference<Path> file) {
        Path f = file.getAndSet(null);
        if (f != null) {
            try {
                Files.deleteIfExists(f);
                // FlushMetrics' file, if it wrote one.
                Files.deleteIfExists(f.resolveSibling(f.getFileName().toString().replaceAll("\\.json$", ".prom")));
            } catch (java.io.IOException e) {
                LOG.warn("Cannot remove the API access file {}: {}", f, e.getMessage());
            }
        }
    }

    /** Print each line the guest writes to its console, as it arrives. */
    private static void streamConsole(ActorSystem<?> system, PrintStream out) {
        ActorRef<ActovisorEvent.GuestConsoleLine> printer = system.systemActorOf(
                Behaviors.receive(ActovisorEvent.GuestConsoleLine.class).onMessage(
                        ActovisorEvent.GuestConsoleLine.class, line -> {
                            out.println(line.line());
                            out.flush();
                            return Behaviors.same();
                        }).build(), "console", org.apache.pekko.actor.typed.Props.empty());
        system.eventStream().tell(new EventStream.Subscribe<>(ActovisorEvent.GuestConsoleLine.class, printer));
    }

    /** The system's root: spawns the VM, and ends the system when the VM stops. */
    private static Behavior<Void> guardian(VmTopology topology, CompletableFuture<ActorRef<VmActor.Command>> vmRef) {
        return Behaviors.setup(context -> {
            ActorRef<VmActor.Command> vm = context.spawn(VmActor.create(topology), "vm");
            context.watch(vm);
            vmRef.complete(vm);
            // The VM stopped (guest halt, API shutdown, signal or failed start): so does the system.
            return Behaviors.receive(Void.class).onSignal(Terminated.class, t -> Behaviors.stopped()).build();
        });
    }

    /** The VM was stopped by SIGINT/SIGTERM while it was still starting: wait for the teardown, exit 0. */
    private static int stoppedBySignal(ActorSystem<Void> system, VmTopology topology, PrintStream out) {
        awaitTermination(system);
        out.println("VM " + topology.name() + " stopped");
        return 0;
    }

    private static void awaitTermination(ActorSystem<?> system) {
        try {
            system.getWhenTerminated().toCompletableFuture().get(TEARDOWN_TIMEOUT.toSeconds(), TimeUnit.SECONDS);
        } catch (Exception e) {
            LOG.error("The actor system did not terminate within {} s", TEARDOWN_TIMEOUT.toSeconds());
        }
    }
}
