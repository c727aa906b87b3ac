package io.actovisor.actors.vfio;

import io.actovisor.devices.coherence.CoherenceAudit;
import io.actovisor.devices.coherence.CoherenceReport;
import io.actovisor.devices.coherence.CpuView;
import io.actovisor.devices.iommu.DmaFault;
import io.actovisor.devices.iommu.DmaMapping;
import io.actovisor.devices.iommu.DmaPermissions;
import io.actovisor.devices.iommu.DmaPort;
import io.actovisor.devices.iommu.IommuException;
import io.actovisor.devices.iommu.vfio.VfioType1Iommu;
import io.actovisor.kernel.vfio.VfioAbi;
import io.actovisor.kernel.vfio.VfioDevice;
import io.actovisor.kernel.vfio.VfioIommuInfo;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.HostAddress;
import io.actovisor.memory.sys.NativeException;
import java.util.List;
import java.util.Objects;
import java.util.Optional;
import java.util.function.Function;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;

/**
 * A container's DMA side, a child of its {@link VfioContainerActor}: user-managed IOVA maps (as a vIOMMU would make
 * them), the device data path (reads and writes through the IOMMU, as a passthrough device's DMA), coherence audits
 * and, on the {@code vfio-type1} backend, the kernel's own view. The container keeps membership and mirroring the
 * flat view; it hands this actor the IOMMU when its first group attaches and takes it back when the last one
 * leaves. Without an open IOMMU every request fails with {@link IommuException.Kind#CLOSED}.
 *
 * <p>Send requests to the container as {@link VfioContainerActor.Dma}; each has its own typed answer, and every
 * failure is a {@link DmaFailed} naming what failed.
 */
public final class ContainerDmaActor extends AbstractBehavior<ContainerDmaActor.Command> {

    /** What the DMA side accepts: the public {@link Request}s, and the container's hand-over of its IOMMU. */
    public sealed interface Command permits Request, IommuOpened, IommuClosed {
    }

    /** A request anyone may send (through {@link VfioContainerActor.Dma}). */
    public sealed interface Request extends Command permits MapDma, UnmapDma, DmaRead, DmaWrite, Audit,
            TakePfnLedger, OpenVfioDevice, ReadKernelInfo, KernelMap {
    }

    /** Map {@code iova} to {@code host} outside the flat view (a user-managed IOVA, as a vIOMMU would). */
    public record MapDma(AddressRange iova, HostAddress host, DmaPermissions permissions,
            ActorRef<MapResult> replyTo) implements Request {
        public MapDma {
            Objects.requireNonNull(iova, "iova");
            Objects.requireNonNull(host, "host");
            Objects.requireNonNull(permissions, "permissions");
            Objects.requireNonNull(replyTo, "replyTo");
        }
    }

    /** Unmap every mapping inside {@code iova}. */
    public record UnmapDma(AddressRange iova, ActorRef<UnmapResult> replyTo) implements Request {
        public UnmapDma {
            Objects.requireNonNull(iova, "iova");
            Objects.requireNonNull(replyTo, "replyTo");
        }
    }

    /** Device DMA: read {@code length} bytes at {@code iova} through the IOMMU. */
    public record DmaRead(long iova, int length, ActorRef<ReadResult> replyTo) implements Request {
        public DmaRead {
            Objects.requireNonNull(replyTo, "replyTo");
        }
    }

    /** Device DMA: write {@code data} (copied) at {@code iova} through the IOMMU. */
    public record DmaWrite(long iova, byte[] data, ActorRef<WriteResult> replyTo) implements Request {
        public DmaWrite {
            data = data.clone();
            Objects.requireNonNull(replyTo, "replyTo");
        }

        @Override
        public byte[] data() {
            return data.clone();
        }
    }

    /**
     * Read every mapped page (every one inside {@code within}, when given) through the device and through
     * {@code cpu} and compare (invariant 4); with {@code atMap}, also compare page frame numbers with those recorded
     * when the pages were mapped.
     */
    public record Audit(CpuView cpu, Optional<CoherenceAudit.PfnLedger> atMap, Optional<AddressRange> within,
            ActorRef<AuditResult> replyTo) implements Request {
        public Audit {
            Objects.requireNonNull(cpu, "cpu");
            Objects.requireNonNull(atMap, "atMap");
            Objects.requireNonNull(within, "within");
            Objects.requireNonNull(replyTo, "replyTo");
        }
    }

    /** Record the host page frame numbers behind every mapping now, for a later {@link Audit}. */
    public record TakePfnLedger(CpuView cpu, ActorRef<LedgerResult> replyTo) implements Request {
        public TakePfnLedger {
            Objects.requireNonNull(cpu, "cpu");
            Objects.requireNonNull(replyTo, "replyTo");
        }
    }

    /**
     * {@code vfio-type1} only: open {@code device} (a PCI address such as {@code 0000:00:04.0}) of the attached
     * group {@code group}; the requester owns the device and closes it.
     */
    public record OpenVfioDevice(int group, String device, ActorRef<DeviceResult> replyTo) implements Request {
        public OpenVfioDevice {
            Objects.requireNonNull(device, "device");
            Objects.requireNonNull(replyTo, "replyTo");
        }
    }

    /** {@code vfio-type1} only: ask the kernel for its IOMMU info now ({@code VFIO_IOMMU_GET_INFO}), not as cached. */
    public record ReadKernelInfo(ActorRef<KernelInfoResult> replyTo) implements Request {
        public ReadKernelInfo {
            Objects.requireNonNull(replyTo, "replyTo");
        }
    }

    /**
     * {@code vfio-type1} only: {@code VFIO_IOMMU_MAP_DMA} straight to the kernel, past the backend's own checks, to
     * see the kernel refuse what the backend refuses. A map the kernel accepts is unmapped again at once.
     */
    public record KernelMap(long iova, HostAddress host, long size, ActorRef<KernelMapResult> replyTo)
            implements Request {
        public KernelMap {
            Objects.requireNonNull(host, "host");
            Objects.requireNonNull(replyTo, "replyTo");
        }
    }

    /** The outcome of {@link MapDma}. */
    public sealed interface MapResult permits Mapped, DmaFailed {
    }

    /** The outcome of {@link UnmapDma}. */
    public sealed interface UnmapResult permits Unmapped, DmaFailed {
    }

    /** The outcome of {@link DmaRead}. */
    public sealed interface ReadResult permits DataRead, DmaFailed {
    }

    /** The outcome of {@link DmaWrite}. */
    public sealed interface WriteResult permits DataWritten, DmaFailed {
    }

    /** The outcome of {@link Audit}. */
    public sealed interface AuditResult permits Audited, DmaFailed {
    }

    /** The outcome of {@link TakePfnLedger}. */
    public sealed interface LedgerResult permits LedgerTaken, DmaFailed {
    }

    /** The outcome of {@link OpenVfioDevice}. */
    public sealed interface DeviceResult permits VfioDeviceOpened, DmaFailed {
    }

    /** The outcome of {@link ReadKernelInfo}. */
    public sealed interface KernelInfoResult permits KernelInfo, DmaFailed {
    }

    /** The outcome of {@link KernelMap}. */
    public sealed interface KernelMapResult permits KernelMapAccepted, DmaFailed {
    }

    /** {@code iova} is mapped. */
    public record Mapped(AddressRange iova) implements MapResult {
    }

    /** The mappings that were inside the range, in IOVA order. */
    public record Unmapped(List<DmaMapping> mappings) implements UnmapResult {
        public Unmapped {
            mappings = List.copyOf(mappings);
        }
    }

    /** What the device read at {@code iova}. */
    public record DataRead(long iova, byte[] data) implements ReadResult {
        public DataRead {
            data = data.clone();
        }

        @Override
        public byte[] data() {
            return data.clone();
        }
    }

    /** The device wrote {@code length} bytes at {@code iova}. */
    public record DataWritten(long iova, int length) implements WriteResult {
    }

    /** The audit of {@code mappings}, the IOMMU's mappings when it ran. */
    public record Audited(List<DmaMapping> mappings, CoherenceReport report) implements AuditResult {
        public Audited {
            mappings = List.copyOf(mappings);
        }
    }

    /** The frame numbers behind the mappings. */
    public record LedgerTaken(CoherenceAudit.PfnLedger ledger) implements LedgerResult {
    }

    /** The opened device; the requester closes it. */
    public record VfioDeviceOpened(VfioDevice device) implements DeviceResult {
    }

    /** The kernel's IOMMU info. */
    public record KernelInfo(VfioIommuInfo info) implements KernelInfoResult {
    }

    /** The kernel accepted the map (and it was unmapped again). */
    public record KernelMapAccepted(long iova, long size) implements KernelMapResult {
    }

    /**
     * The request failed: the IOMMU refused it ({@code kind}), the IOVA faulted, the backend has no such facility,
     * or no IOMMU is open.
     */
    public record DmaFailed(String reason, Optional<IommuException.Kind> kind) implements MapResult, UnmapResult,
            ReadResult, WriteResult, AuditResult, LedgerResult, DeviceResult, KernelInfoResult, KernelMapResult {
        public DmaFailed {
            Objects.requireNonNull(reason, "reason");
            Objects.requireNonNull(kind, "kind");
        }
    }

    /** The container opened its IOMMU: serve requests through it. */
    record IommuOpened(GuardedIommu iommu) implements Command {
    }

    /** The container closed its IOMMU. */
    enum IommuClosed implements Command {
        INSTANCE
    }

    private final String container;
    private Optional<GuardedIommu> iommu = Optional.empty();

    private ContainerDmaActor(ActorContext<Command> context, String container) {
        super(context);
        this.container = container;
    }

    /** The DMA side of container {@code container}; the container spawns it. */
    static Behavior<Command> create(String container) {
        return Behaviors.setup(context -> new ContainerDmaActor(context, container));
    }

    @Override
    public Receive<Command> createReceive() {
        return newReceiveBuilder()
                .onMessage(IommuOpened.class, opened -> {
                    iommu = Optional.of(opened.iommu());
                    return this;
                })
                .onMessageEquals(IommuClosed.INSTANCE, () -> {
                    iommu = Optional.empty();
                    return this;
                })
                .onMessage(MapDma.class, this::onMapDma)
                .onMessage(UnmapDma.class, this::onUnmapDma)
                .onMessage(DmaRead.class, this::onDmaRead)
                .onMessage(DmaWrite.class, this::onDmaWrite)
                .onMessage(Audit.class, this::onAudit)
                .onMessage(TakePfnLedger.class, this::onTakePfnLedger)
                .onMessage(OpenVfioDevice.class, this::onOpenVfioDevice)
                .onMessage(ReadKernelInfo.class, this::onReadKernelInfo)
                .onMessage(KernelMap.class, this::onKernelMap)
                .build();
    }

    private Behavior<Command> onMapDma(MapDma map) {
        map.replyTo().tell(run(MapResult.class, io -> {
            io.map(map.iova(), map.host(), map.permissions());
            return new Mapped(map.iova());
        }));
        return this;
    }

    private Behavior<Command> onUnmapDma(UnmapDma unmap) {
        unmap.replyTo().tell(run(UnmapResult.class, io -> new Unmapped(io.unmap(unmap.iova()))));
        return this;
    }

    private Behavior<Command> onDmaRead(DmaRead read) {
        read.replyTo().tell(run(ReadResult.class, io -> new DataRead(read.iova(),
                port(io).read(read.iova(), read.length()))));
        return this;
    }

    private Behavior<Command> onDmaWrite(DmaWrite write) {
        write.replyTo().tell(run(WriteResult.class, io -> {
            byte[] data = write.data();
            port(io).write(write.iova(), data);
            return new DataWritten(write.iova(), data.length);
        }));
        return this;
    }

    private Behavior<Command> onAudit(Audit audit) {
        audit.replyTo().tell(run(AuditResult.class, io -> {
            // One monitor hold for the whole audit: no commit changes the mappings half-way through it.
            return io.locked(() -> {
                List<DmaMapping> mappings = io.mappings().stream()
                        .filter(m -> audit.within().map(w -> w.contains(m.iova())).orElse(true)).toList();
                DmaPort device = port(io);
                CoherenceReport report = audit.atMap().isPresent()
                        ? CoherenceAudit.audit(mappings, device, audit.cpu(), audit.atMap().get())
                        : CoherenceAudit.audit(mappings, device, audit.cpu());
                return new Audited(mappings, report);
            });
        }));
        return this;
    }

    private Behavior<Command> onTakePfnLedger(TakePfnLedger take) {
        take.replyTo().tell(run(LedgerResult.class, io -> new LedgerTaken(
                CoherenceAudit.PfnLedger.take(io.mappings(), take.cpu()))));
        return this;
    }

    private Behavior<Command> onOpenVfioDevice(OpenVfioDevice open) {
        open.replyTo().tell(run(DeviceResult.class, io -> type1(io, "open a VFIO device",
                t -> new VfioDeviceOpened(t.group(open.group()).openDevice(open.device())))));
        return this;
    }

    private Behavior<Command> onReadKernelInfo(ReadKernelInfo read) {
        read.replyTo().tell(run(KernelInfoResult.class, io -> type1(io, "ask the kernel for its IOMMU info",
                t -> new KernelInfo(t.container().iommuInfo()))));
        return this;
    }

    private Behavior<Command> onKernelMap(KernelMap map) {
        map.replyTo().tell(run(KernelMapResult.class, io -> type1(io, "map DMA in the kernel", t -> {
            t.container().mapDma(map.host().value(), map.iova(), map.size(),
                    VfioAbi.DmaMap.FLAG_READ | VfioAbi.DmaMap.FLAG_WRITE);
            t.container().unmapDma(map.iova(), map.size());
            return new KernelMapAccepted(map.iova(), map.size());
        })));
        return this;
    }

    private <R> R type1(GuardedIommu io, String what, Function<VfioType1Iommu, R> work) {
        return io.withBackend(VfioType1Iommu.class, work).orElseThrow(() -> new UnsupportedOperationException(
                "container " + container + " cannot " + what + ": its backend is " + io.backend() + ", not "
                        + VfioType1Iommu.BACKEND));
    }

    private static DmaPort port(GuardedIommu io) {
        return io.dmaPort().orElseThrow(() -> new UnsupportedOperationException("the " + io.backend()
                + " backend has no device data path"));
    }

    /** Run {@code work} on the open IOMMU and turn every failure into a {@link DmaFailed} answer. */
    private <R> R run(Class<R> result, Function<GuardedIommu, ? extends R> work) {
        if (iommu.isEmpty()) {
            return result.cast(new DmaFailed("container " + container + " has no open IOMMU: no group is attached",
                    Optional.of(IommuException.Kind.CLOSED)));
        }
        try {
            return work.apply(iommu.get());
        } catch (IommuException e) {
            return result.cast(new DmaFailed(e.getMessage(), Optional.of(e.kind())));
        } catch (DmaFault | UnsupportedOperationException | IllegalArgumentException
                | NativeException e) {
            return result.cast(new DmaFailed(e.getMessage(), Optional.empty()));
        }
    }
}
