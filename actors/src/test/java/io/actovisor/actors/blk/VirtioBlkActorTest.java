package io.actovisor.actors.blk;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.actors.device.DeviceIo;
import io.actovisor.actors.memory.AddressSpaceActor;
import io.actovisor.actors.testing.NativeTestKit;
import io.actovisor.actors.vfio.IommuBackend;
import io.actovisor.actors.vfio.VfioContainerActor;
import io.actovisor.devices.iommu.pinned.PinnedIommu;
import io.actovisor.devices.virtio.VirtioMmio;
import io.actovisor.devices.virtio.Virtqueue;
import io.actovisor.devices.virtio.blk.VirtioBlk;
import io.actovisor.memory.FlatView;
import io.actovisor.memory.GuestAddress;
import io.actovisor.memory.GuestMemory;
import io.actovisor.memory.GuestMemoryView;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.MemoryRegion;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.Optional;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * The virtio-blk actor driven through its MMIO window as a driver does: requests served through guest memory, and
 * through a VFIO container on the {@code pinned} backend, where a request before any group is attached (the IOMMU
 * closed) completes with IOERR, so the buffers demonstrably go through the container.
 */
class VirtioBlkActorTest {
    private static final long RAM = 1 << 20;
    private static final long QUEUE = 0x10000;
    private static final int SIZE = 8;
    private static final long HDR = 0x20000;
    private static final long DATA = 0x30000;
    private static final long STATUS = 0x40000;
    private static final Duration TIMEOUT = Duration.ofSeconds(10);
    @RegisterExtension
    static final NativeTestKit KIT = new NativeTestKit();

    /** A driver of one device: MMIO through messages, the queue in {@code memory}. */
    private static final class Driver {
        final ActorRef<DeviceIo.Command> device;
        final GuestMemory memory;
        int available;

        Driver(ActorRef<DeviceIo.Command> device, GuestMemory memory) {
            this.device = device;
            this.memory = memory;
        }

        long read(int register) {
            TestProbe<DeviceIo.Result> probe = KIT.kit().createTestProbe();
            device.tell(new DeviceIo.Read(DeviceIo.Space.MMIO, register, register, 4, probe.ref()));
            return ((DeviceIo.Completed) probe.receiveMessage(TIMEOUT)).value();
        }

        void write(int register, long value) {
            TestProbe<DeviceIo.Result> probe = KIT.kit().createTestProbe();
            device.tell(new DeviceIo.Write(DeviceIo.Space.MMIO, register, register, 4, value, probe.ref()));
            probe.expectMessageClass(DeviceIo.Completed.class, TIMEOUT);
        }

        void bringUp() {
            assertEquals(VirtioBlk.DEVICE_ID, read(VirtioMmio.DEVICE_ID));
            write(VirtioMmio.STATUS, 0);
            write(VirtioMmio.STATUS, VirtioMmio.S_ACKNOWLEDGE | VirtioMmio.S_DRIVER);
            write(VirtioMmio.DRIVER_FEATURES_SEL, 1);
            write(VirtioMmio.DRIVER_FEATURES, 1);
            write(VirtioMmio.STATUS, VirtioMmio.S_ACKNOWLEDGE | VirtioMmio.S_DRIVER | VirtioMmio.S_FEATURES_OK);
            write(VirtioMmio.QUEUE_SEL, 0);
            write(VirtioMmio.QUEUE_NUM, SIZE);
            write(VirtioMmio.QUEUE_DESC_LOW, QUEUE);
            write(VirtioMmio.QUEUE_DRIVER_LOW, QUEUE + 0x100);
            write(VirtioMmio.QUEUE_DEVICE_LOW, QUEUE + 0x400);
            write(VirtioMmio.QUEUE_READY, 1);
            write(VirtioMmio.STATUS, VirtioMmio.S_ACKNOWLEDGE | VirtioMmio.S_DRIVER | VirtioMmio.S_FEATURES_OK
                    | VirtioMmio.S_DRIVER_OK);
        }

        /** Submit a request (header, one data buffer, status) and wait for the device to hand it back. */
        int request(int type, long sector, long data, int length) {
            submit(type, sector, data, length);
            TestProbe<Object> wait = KIT.kit().createTestProbe();
            wait.awaitAssert(TIMEOUT, () -> {
                assertEquals(available, memory.readShort(new GuestAddress(QUEUE + 0x400 + 2)) & 0xffff);
                return null;
            });
            assertTrue((read(VirtioMmio.INTERRUPT_STATUS) & VirtioMmio.INT_USED_BUFFER) != 0);
            write(VirtioMmio.INTERRUPT_ACK, VirtioMmio.INT_USED_BUFFER);
            return memory.readByte(new GuestAddress(STATUS)) & 0xff;
        }

        void submit(int type, long sector, long data, int length) {
            memory.write(new GuestAddress(HDR), ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN)
                    .putInt(type).putInt(0).putLong(sector).array());
            memory.writeByte(new GuestAddress(STATUS), (byte) 0x7f);
            long[][] chain = {{HDR, 16, 0}, {data, length, type == VirtioBlk.T_IN ? Virtqueue.F_WRITE : 0},
                    {STATUS, 1, Virtqueue.F_WRITE}};
            for (int i = 0; i < chain.length; i++) {
                long d = QUEUE + 16L * i;
                memory.writeLong(new GuestAddress(d), chain[i][0]);
                memory.writeInt(new GuestAddress(d + 8), (int) chain[i][1]);
                memory.writeShort(new GuestAddress(d + 12), (short) (chain[i][2]
                        | (i + 1 < chain.length ? Virtqueue.F_NEXT : 0)));
                memory.writeShort(new GuestAddress(d + 14), (short) (i + 1));
            }
            available++;
            memory.writeShort(new GuestAddress(QUEUE + 0x100 + 4 + 2L * ((available - 1) % SIZE)), (short) 0);
            memory.writeShort(new GuestAddress(QUEUE + 0x100 + 2), (short) available);
            write(VirtioMmio.QUEUE_NOTIFY, 0);
        }

        VirtioBlkActor.DmaLog log() {
            TestProbe<VirtioBlkActor.DmaLog> probe = KIT.kit().createTestProbe();
            device.tell(new VirtioBlkActor.GetDmaLog(probe.ref()));
            return probe.receiveMessage(TIMEOUT);
        }
    }

    private static byte[] pattern(int length, int seed) {
        byte[] b = new byte[length];
        for (int i = 0; i < length; i++) {
            b[i] = (byte) (i * 13 + seed);
        }
        return b;
    }

    /** Write 8 KiB at sector 10 and read it back into other pages; returns the driver's view. */
    private static void writeAndReadBack(Driver driver) {
        byte[] data = pattern(8192, 5);
        driver.memory.write(new GuestAddress(DATA), data);
        assertEquals(VirtioBlk.S_OK, driver.request(VirtioBlk.T_OUT, 10, DATA, 8192));
        assertEquals(VirtioBlk.S_OK, driver.request(VirtioBlk.T_IN, 10, DATA + 0x8000, 8192));
        assertArrayEquals(data, driver.memory.read(new GuestAddress(DATA + 0x8000), 8192));
        assertEquals(VirtioBlk.S_IOERR, driver.request(VirtioBlk.T_IN, 1 << 20, DATA, 512), "past the capacity");
    }

    @Test
    void requestsAreServedThroughGuestMemoryAndTheirDataFramesLogged() {
        try (HostMemory ram = HostMemory.anonymous("blk-actor-ram", RAM)) {
            GuestMemory memory = GuestMemory.of(FlatView.of(List.of(MemoryRegion.ram("ram", GuestAddress.ZERO,
                    ram))));
            Driver driver = new Driver(KIT.kit().spawn(VirtioBlkActor.create("blk0", GuestMemoryView.of(memory),
                    1 << 20,
                    Optional.empty(), Optional.empty())), memory);
            driver.bringUp();
            writeAndReadBack(driver);
            VirtioBlkActor.DmaLog log = driver.log();
            assertFalse(log.viaContainer());
            assertEquals(3, log.requests());
            assertEquals(1, log.errors());
            assertEquals(8192, log.bytesIn());
            assertEquals(8192, log.bytesOut());
            assertArrayEquals(new long[] {0x30, 0x31, 0x38, 0x39}, log.frames());
            KIT.kit().stop(driver.device);
        }
    }

    @Test
    void throughAPinnedContainerTheBuffersGoThroughTheIommu() {
        try (HostMemory ram = HostMemory.anonymous("blk-actor-pinned-ram", RAM)) {
            ActorRef<AddressSpaceActor.Command> space = KIT.kit().spawn(AddressSpaceActor.create("blk-space"));
            TestProbe<AddressSpaceActor.CommitResult> committed = KIT.kit().createTestProbe();
            space.tell(new AddressSpaceActor.Commit(List.of(new AddressSpaceActor.AddRegion(
                    MemoryRegion.ram("ram", GuestAddress.ZERO, ram))), committed.ref()));
            committed.expectMessageClass(AddressSpaceActor.Committed.class, TIMEOUT);
            ActorRef<VfioContainerActor.Command> container = KIT.kit().spawn(VfioContainerActor.create("c0", space,
                    IommuBackend.shared(PinnedIommu.BACKEND, () -> PinnedIommu.open(65535))));
            GuestMemory memory = GuestMemory.of(FlatView.of(List.of(MemoryRegion.ram("ram", GuestAddress.ZERO,
                    ram))));
            Driver driver = new Driver(KIT.kit().spawn(VirtioBlkActor.create("blk0", GuestMemoryView.of(memory),
                    1 << 20,
                    Optional.of(container), Optional.empty())), memory);
            driver.bringUp();
            memory.write(new GuestAddress(DATA), pattern(512, 1));
            // No group attached: the container's IOMMU is closed, so neither the header can be read nor the
            // IOERR status written: the device needs a reset, and the request is never handed back.
            driver.submit(VirtioBlk.T_OUT, 0, DATA, 512);
            KIT.kit().createTestProbe().awaitAssert(TIMEOUT, () -> {
                assertTrue((driver.read(VirtioMmio.STATUS) & VirtioMmio.S_DEVICE_NEEDS_RESET) != 0);
                return null;
            });
            assertEquals(0x7f, memory.readByte(new GuestAddress(STATUS)) & 0xff);
            assertEquals(0, memory.readShort(new GuestAddress(QUEUE + 0x400 + 2)));

            TestProbe<VfioContainerActor.AttachResult> attached = KIT.kit().createTestProbe();
            container.tell(new VfioContainerActor.AttachGroup("g0", KIT.kit().createTestProbe().ref(), attached.ref()));
            attached.expectMessageClass(VfioContainerActor.GroupAttached.class, TIMEOUT);
            driver.available = 0;
            driver.bringUp();
            writeAndReadBack(driver);
            VirtioBlkActor.DmaLog log = driver.log();
            assertTrue(log.viaContainer());
            assertTrue(log.containerFaults() >= 2, "the header read and the status write before the attach");
            assertEquals(Arrays.stream(new long[] {0x30, 0x31, 0x38, 0x39}).boxed().toList(),
                    Arrays.stream(log.frames()).boxed().toList());
            KIT.kit().stop(driver.device);
            KIT.kit().stop(container);
            KIT.kit().stop(space);
        }
    }
}
