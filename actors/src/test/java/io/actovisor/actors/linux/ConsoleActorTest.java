package io.actovisor.actors.linux;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.actors.device.DeviceIo;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.eventstream.EventStream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;

/** The Linux console's UART as the 8250 driver uses it, its interrupt line, its output events and panic reports. */
class ConsoleActorTest {
    private static final ActorTestKit KIT = ActorTestKit.create();
    private static final int THR = 0;
    private static final int IER = 1;
    private static final int IIR = 2;
    private static final int LSR = 5;

    @AfterAll
    static void stop() {
        KIT.shutdownTestKit();
    }

    private static final class Line implements io.actovisor.kernel.kvm.IrqLine {
        final List<Boolean> levels = Collections.synchronizedList(new ArrayList<>());

        @Override
        public void set(boolean high) {
            if (levels.isEmpty() || levels.get(levels.size() - 1) != high) {
                levels.add(high);
            }
        }

        boolean high() {
            return !levels.isEmpty() && levels.get(levels.size() - 1);
        }
    }

    private static long read(ActorRef<DeviceIo.Command> console, int offset) {
        TestProbe<DeviceIo.Result> reply = KIT.createTestProbe();
        console.tell(new DeviceIo.Read(DeviceIo.Space.PIO, 0x3f8 + offset, offset, 1, reply.ref()));
        return ((DeviceIo.Completed) reply.receiveMessage()).value();
    }

    private static void write(ActorRef<DeviceIo.Command> console, int offset, int value) {
        TestProbe<DeviceIo.Result> reply = KIT.createTestProbe();
        console.tell(new DeviceIo.Write(DeviceIo.Space.PIO, 0x3f8 + offset, offset, 1, value, reply.ref()));
        reply.receiveMessage();
    }

    /** The next chunk {@code device} published (other tests' consoles publish on the same event stream). */
    private static String next(TestProbe<LinuxGuestEvent.ConsoleOutput> output, String device) {
        while (true) {
            LinuxGuestEvent.ConsoleOutput chunk = output.receiveMessage(Duration.ofSeconds(5));
            if (chunk.device().equals(device)) {
                return chunk.text();
            }
        }
    }

    @Test
    void outputIsPublishedInChunksAndInputRaisesTheInterrupt() {
        TestProbe<LinuxGuestEvent.ConsoleOutput> output = KIT.createTestProbe();
        KIT.system().eventStream().tell(new EventStream.Subscribe<>(LinuxGuestEvent.ConsoleOutput.class,
                output.ref()));
        Line line = new Line();
        TestProbe<LinuxGuestEvent.Panicked> panics = KIT.createTestProbe();
        ActorRef<DeviceIo.Command> console = KIT.spawn(ConsoleActor.create("com-out", "vm", line, panics.ref()));
        for (char c : "hello\n/ # ".toCharArray()) {
            write(console, THR, c);
        }
        // The prompt has no newline: it still arrives (after the flush delay); chunk boundaries depend on timing.
        StringBuilder text = new StringBuilder();
        while (!text.toString().equals("hello\n/ # ")) {
            text.append(next(output, "com-out"));
            assertTrue("hello\n/ # ".startsWith(text.toString()), text.toString());
        }

        write(console, IER, 0x01);
        assertFalse(line.high(), "no input yet: the line stays low");
        console.tell(new ConsoleActor.Input("ls\n"));
        assertEquals(0x04, read(console, IIR) & 0x0f, "received data available");
        assertTrue(line.high());
        assertEquals(0x01, read(console, LSR) & 0x01, "LSR data ready");
        StringBuilder got = new StringBuilder();
        while ((read(console, LSR) & 0x01) != 0) {
            got.append((char) read(console, THR));
        }
        assertEquals("ls\n", got.toString());
        assertEquals(0x01, read(console, IIR) & 0x0f, "nothing pending");
        assertFalse(line.high(), "the line falls once the guest has read everything");
    }

    @Test
    void enablingTheTransmitInterruptRaisesItUntilIirIsRead() {
        Line line = new Line();
        TestProbe<LinuxGuestEvent.Panicked> panics = KIT.createTestProbe();
        ActorRef<DeviceIo.Command> console = KIT.spawn(ConsoleActor.create("com1", "vm", line, panics.ref()));
        write(console, IER, 0x02);
        assertTrue(line.high(), "THR is empty, so THRI fires at once (the 8250 driver's THRE test needs it)");
        assertEquals(0x02, read(console, IIR) & 0x0f);
        assertFalse(line.high(), "reading IIR cleared the THR-empty interrupt");
        write(console, THR, 'x');
        assertTrue(line.high(), "the byte went out at once: THR is empty again");
        write(console, IER, 0);
        assertFalse(line.high());
    }

    @Test
    void aPanicLineIsReportedWithTheLinesBeforeIt() {
        Line line = new Line();
        TestProbe<LinuxGuestEvent.Panicked> panics = KIT.createTestProbe();
        ActorRef<DeviceIo.Command> console = KIT.spawn(ConsoleActor.create("com1", "vm-p", line, panics.ref()));
        for (char c : "VFS: Unable to mount root fs\nKernel panic - not syncing: VFS\n".toCharArray()) {
            write(console, THR, c);
        }
        LinuxGuestEvent.Panicked panicked = panics.receiveMessage(Duration.ofSeconds(5));
        assertEquals("vm-p", panicked.vm());
        assertEquals(List.of("VFS: Unable to mount root fs", "Kernel panic - not syncing: VFS"),
                panicked.lastLines());
    }

    @Test
    void aPanicWhoseVmStopsWithinItsMomentIsStillReportedOnTheEventStream() {
        Line line = new Line();
        TestProbe<LinuxGuestEvent.Panicked> panics = KIT.createTestProbe();
        TestProbe<LinuxGuestEvent.Panicked> published = KIT.createTestProbe();
        KIT.system().eventStream().tell(new EventStream.Subscribe<>(LinuxGuestEvent.Panicked.class,
                published.ref()));
        ActorRef<DeviceIo.Command> console = KIT.spawn(ConsoleActor.create("com1", "vm-s", line, panics.ref()));
        for (char c : "Kernel panic - not syncing: sysrq triggered crash\n".toCharArray()) {
            write(console, THR, c);
        }
        KIT.stop(console); // the VM stops (its vCPU failed) before the report's moment is over
        LinuxGuestEvent.Panicked panicked = published.receiveMessage(Duration.ofSeconds(5));
        assertEquals("vm-s", panicked.vm());
        assertEquals(List.of("Kernel panic - not syncing: sysrq triggered crash"), panicked.lastLines());
        panics.expectNoMessage(Duration.ofMillis(400));
    }
}
