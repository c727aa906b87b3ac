package io.actovisor.actors.vfio;

import io.actovisor.devices.coherence.CoherenceAudit;
import io.actovisor.devices.coherence.CoherenceReport;
import io.actovisor.devices.coherence.CpuView;
import io.actovisor.devices.iommu.DmaFault;
import io.actovisor.devices.iommu.DmaMapping;
import io.actovisor.devices.iommu.DmaPermissions;
import io.actovisor.devices.iommu.DmaPort;
import io.actovisor.devices.iommu.Iommu;
import io.actovisor.devices.iommu.IommuException;
import io.actovisor.devices.iommu.IommuInfo;
import io.actovisor.devices.iommu.vfio.VfioType1Iommu;
import io.actovisor.kernel.vfio.VfioAbi;
import io.actovisor.kernel.vfio.VfioDevice;
import io.actovisor.kernel.vfio.VfioIommuInfo;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.HostAddress;
import io.actovisor.memory.sys.NativeException;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.Optional;
import java.util.OptionalLong;
import java.util.function.Function;
import java.util.function.Supplier;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.PostStop;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;

/**
 * The container's IOMMU side: the one actor that touches the IOMMU. A child of its {@link VfioContainerActor}, it
 * opens the IOMMU context when the container's first group attaches, joins and removes further groups, applies the
 * container's mirror of the flat view (one {@code Apply} per update, all or nothing), releases and restores
 * coordinated discard blocks, and closes the IOMMU when the last group leaves, or in {@code PostStop} if it is still
 * open. The container decides what to map and asks for every IOMMU effect with a typed order; the IOMMU itself never
 * leaves this actor, so no lock is needed: its mailbox serializes every call.
 *
 * <p>It also serves the public {@link Request}s: user-managed IOVA maps (as a vIOMMU would make them), the device
 * data path (reads and writes through the IOMMU, as a passthrough device's DMA), coherence audits and, on the
 * {@code vfio-type1} backend, the kernel's own view. Without an open IOMMU every request fails with
 * {@link IommuException.Kind#CLOSED}: a request that follows the last group's detach gets that answer, never a
 * closed fd.
 *
 * <p>Send requests to the container as {@link VfioContainerActor.Dma}; each has its own typed answer, and every
 * failure is a {@link DmaFailed} naming what failed.
 */
public final class ContainerDmaActor extends AbstractBehavior<ContainerDmaActor.Command> {

    /** What the IOMMU side accepts: the public {@link Request}s, and its container's orders. */
    public sealed interface Command permits Request, Order {
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

    /**
     * What the container orders its IOMMU side to do (package-private: only {@link VfioContainerActor} sends them).
     * Each order is executed whole in one handler and answered with an {@link OrderReply} to its {@code replyTo}.
     */
    sealed interface Order extends Command permits Open, Join, Leave, Close, Apply, Release, Restore, Report {
    }

    /**
     * Open the IOMMU with {@code groupId} as its first group. With {@code blockSize} (a coordinated container), the
     * IOMMU's minimum page must not be larger than a block, or it is closed again and the open fails.
     */
    record Open(String groupId, OptionalLong blockSize, ActorRef<OrderReply> replyTo) implements Order {
        Open {
            Objects.requireNonNull(groupId, "groupId");
            Objects.requireNonNull(blockSize, "blockSize");
            Objects.requireNonNull(replyTo, "replyTo");
        }
    }

    /** Join {@code groupId} to the open IOMMU. */
    record Join(String groupId, ActorRef<OrderReply> replyTo) implements Order {
    }

    /** Take {@code groupId} out of the open IOMMU, which keeps its other groups. */
    record Leave(String groupId, ActorRef<OrderReply> replyTo) implements Order {
    }

    /** Close the IOMMU (the last group left): everything is unmapped and unpinned. */
    record Close(ActorRef<OrderReply> replyTo) implements Order {
    }

    /**
     * One flat-view update, all or nothing: unmap everything inside each of {@code unmap}, then map each of
     * {@code map}. If the IOMMU refuses any step, what the update mapped is unmapped and what it unmapped is mapped
     * again, and the answer is {@link OrderFailed}. With {@code blockSize} (a coordinated container, one mapping per
     * block) an update that would need more mappings than the IOMMU accepts is refused before anything is pinned.
     */
    record Apply(List<AddressRange> unmap, List<DmaMapping> map, OptionalLong blockSize,
            ActorRef<OrderReply> replyTo) implements Order {
        Apply {
            unmap = List.copyOf(unmap);
            map = List.copyOf(map);
            Objects.requireNonNull(blockSize, "blockSize");
            Objects.requireNonNull(replyTo, "replyTo");
        }
    }

    /** Unmap (and so unpin) every mapping inside each block, block by block. */
    record Release(List<AddressRange> blocks, ActorRef<OrderReply> replyTo) implements Order {
        Release {
            blocks = List.copyOf(blocks);
        }
    }

    /** Map each block's mappings again, all or nothing per block (the container populated the pages). */
    record Restore(List<BlockMappings> blocks, ActorRef<OrderReply> replyTo) implements Order {
        Restore {
            blocks = List.copyOf(blocks);
        }
    }

    /** The mappings that mirror the view inside {@code block}. */
    record BlockMappings(AddressRange block, List<DmaMapping> mappings) {
        BlockMappings {
            mappings = List.copyOf(mappings);
        }
    }

    /** Report the IOMMU's mappings, pinned bytes and info. */
    record Report(ActorRef<OrderReply> replyTo) implements Order {
    }

    /** What the IOMMU side answers the container. */
    sealed interface OrderReply permits Opened, Done, Closed, BlocksOutcome, Snapshot, OrderFailed {
    }

    /** The IOMMU is open; {@code info} is its geometry (page sizes, mapping limit, IOVA ranges). */
    record Opened(IommuInfo info) implements OrderReply {
    }

    /** The order was carried out. */
    enum Done implements OrderReply {
        INSTANCE
    }

    /** The IOMMU is closed; it had {@code unpinnedBytes} pinned. */
    record Closed(long unpinnedBytes) implements OrderReply {
    }

    /** A {@link Release} or {@link Restore}: every block not in {@code failed} was done. */
    record BlocksOutcome(List<AddressRange> failed, List<String> reasons) implements OrderReply {
        BlocksOutcome {
            failed = List.copyOf(failed);
            reasons = List.copyOf(reasons);
        }
    }

    /** The IOMMU as it is: empty, 0 and no info when it is not open. */
    record Snapshot(List<DmaMapping> mappings, long pinnedBytes, Optional<IommuInfo> info) implements OrderReply {
        Snapshot {
            mappings = List.copyOf(mappings);
        }
    }

    /** The order was refused and left the IOMMU as it was; {@code reason} says why. */
    record OrderFailed(String reason) implements OrderReply {
    }

    private final String container;
    private final IommuBackend backend;
    /** The open context and its IOMMU; both null while closed. */
    private IommuBackend.Context context;
    private Iommu iommu;

    private ContainerDmaActor(ActorContext<Command> context, String container, IommuBackend backend) {
        super(context);
        this.container = container;
        this.backend = backend;
    }

    /** The IOMMU side of container {@code container}, opening contexts through {@code backend}; the container spawns it. */
    static Behavior<Command> create(String container, IommuBackend backend) {
        Objects.requireNonNull(backend, "backend");
        return Behaviors.setup(context -> new ContainerDmaActor(context, container, backend));
    }

    @Override
    public Receive<Command> createReceive() {
        return newReceiveBuilder()
                .onMessage(Open.class, this::onOpen)
                .onMessage(Join.class, this::onJoin)
                .onMessage(Leave.class, this::onLeave)
                .onMessage(Close.class, this::onClose)
                .onMessage(Apply.class, this::onApply)
                .onMessage(Release.class, this::onRelease)
                .onMessage(Restore.class, this::onRestore)
                .onMessage(Report.class, this::onReport)
                .onMessage(MapDma.class, this::onMapDma)
                .onMessage(UnmapDma.class, this::onUnmapDma)
                .onMessage(DmaRead.class, this::onDmaRead)
                .onMessage(DmaWrite.class, this::onDmaWrite)
                .onMessage(Audit.class, this::onAudit)
                .onMessage(TakePfnLedger.class, this::onTakePfnLedger)
                .onMessage(OpenVfioDevice.class, this::onOpenVfioDevice)
                .onMessage(ReadKernelInfo.class, this::onReadKernelInfo)
                .onMessage(KernelMap.class, this::onKernelMap)
                .onSignal(PostStop.class, signal -> onPostStop())
                .build();
    }

    // ---- the container's orders ----

    private Behavior<Command> onOpen(Open open) {
        if (iommu != null) {
            open.replyTo().tell(new OrderFailed("container " + container + " has its IOMMU open already"));
            return this;
        }
        IommuBackend.Context opened;
        try {
            opened = backend.open(open.groupId());
        } catch (RuntimeException e) {
            open.replyTo().tell(new OrderFailed(e.getMessage()));
            return this;
        }
        IommuInfo info;
        try {
            info = opened.iommu().info();
            long page = info.minPageSize();
            if (open.blockSize().isPresent() && open.blockSize().getAsLong() < page) {
                throw new IllegalArgumentException("discard-block-size " + open.blockSize().getAsLong()
                        + " is smaller than the IOMMU's minimum page size " + page);
            }
        } catch (RuntimeException e) {
            opened.iommu().close();
            open.replyTo().tell(new OrderFailed(e.getMessage()));
            return this;
        }
        context = opened;
        iommu = opened.iommu();
        open.replyTo().tell(new Opened(info));
        return this;
    }

    private Behavior<Command> onJoin(Join join) {
        join.replyTo().tell(order(() -> {
            context.attach(join.groupId());
            return Done.INSTANCE;
        }));
        return this;
    }

    private Behavior<Command> onLeave(Leave leave) {
        leave.replyTo().tell(order(() -> {
            context.detach(leave.groupId());
            return Done.INSTANCE;
        }));
        return this;
    }

    private Behavior<Command> onClose(Close close) {
        close.replyTo().tell(new Closed(closeIommu()));
        return this;
    }

    /** Close the IOMMU if it is open; the bytes it had pinned. */
    private long closeIommu() {
        if (iommu == null) {
            return 0;
        }
        Iommu closing = iommu;
        iommu = null;
        context = null;
        long pinned = closing.pinnedBytes();
        closing.close();
        return pinned;
    }

    private Behavior<Command> onApply(Apply apply) {
        if (iommu == null) {
            apply.replyTo().tell(notOpen());
            return this;
        }
        List<DmaMapping> unmapped = new ArrayList<>();
        List<DmaMapping> mapped = new ArrayList<>();
        try {
            if (apply.blockSize().isPresent()) {
                checkMappingLimit(apply, apply.blockSize().getAsLong());
            }
            for (AddressRange range : apply.unmap()) {
                unmapped.addAll(iommu.unmap(range));
            }
            for (DmaMapping m : apply.map()) {
                iommu.map(m.iova(), m.host(), m.permissions());
                mapped.add(m);
            }
        } catch (RuntimeException e) {
            undo(mapped, unmapped);
            apply.replyTo().tell(new OrderFailed(e.getMessage()));
            return this;
        }
        apply.replyTo().tell(Done.INSTANCE);
        return this;
    }

    /**
     * A coordinated container needs one mapping per block, so type1's {@code dma_entry_limit} counts blocks: refuse
     * an update that would need more before anything is pinned, naming both numbers. (Other modes map a section as
     * one mapping; there the IOMMU's own refusal, mid-update and undone, says it.)
     */
    private void checkMappingLimit(Apply apply, long blockSize) {
        long needed = (long) iommu.mappings().size() - apply.unmap().size() + apply.map().size();
        int limit = iommu.info().maxMappings();
        if (needed > limit) {
            throw new IommuException(IommuException.Kind.LIMIT, null, "guest memory needs " + needed
                    + " IOMMU mappings (one per discard-block-size block of " + blockSize + " bytes) but the "
                    + iommu.backend() + " IOMMU accepts at most " + limit
                    + (iommu.backend().equals(VfioType1Iommu.BACKEND) ? " (type1's dma_entry_limit, see "
                    + "/sys/module/vfio_iommu_type1/parameters/dma_entry_limit)" : ""));
        }
    }

    /** Undo a partly applied update: unmap what it mapped, map again what it unmapped. */
    private void undo(List<DmaMapping> mapped, List<DmaMapping> unmapped) {
        for (int i = mapped.size() - 1; i >= 0; i--) {
            iommu.unmap(mapped.get(i).iova());
        }
        for (DmaMapping m : unmapped) {
            iommu.map(m.iova(), m.host(), m.permissions());
        }
    }

    private Behavior<Command> onRelease(Release release) {
        List<AddressRange> failed = new ArrayList<>();
        List<String> reasons = new ArrayList<>();
        if (iommu != null) { // a closed IOMMU maps nothing: there is nothing to release
            for (AddressRange block : release.blocks()) {
                try {
                    iommu.unmap(block);
                } catch (RuntimeException e) {
                    failed.add(block);
                    reasons.add(e.getMessage());
                }
            }
        }
        release.replyTo().tell(new BlocksOutcome(failed, reasons));
        return this;
    }

    private Behavior<Command> onRestore(Restore restore) {
        List<AddressRange> failed = new ArrayList<>();
        List<String> reasons = new ArrayList<>();
        if (iommu != null) {
            for (BlockMappings block : restore.blocks()) {
                List<DmaMapping> done = new ArrayList<>();
                try {
                    for (DmaMapping m : block.mappings()) {
                        iommu.map(m.iova(), m.host(), m.permissions());
                        done.add(m);
                    }
                } catch (RuntimeException e) {
                    done.forEach(m -> iommu.unmap(m.iova()));
                    failed.add(block.block());
                    reasons.add(e.getMessage());
                }
            }
        }
        restore.replyTo().tell(new BlocksOutcome(failed, reasons));
        return this;
    }

    private Behavior<Command> onReport(Report report) {
        report.replyTo().tell(iommu == null ? new Snapshot(List.of(), 0, Optional.empty())
                : order(() -> new Snapshot(iommu.mappings(), iommu.pinnedBytes(), Optional.of(iommu.info()))));
        return this;
    }

    private OrderFailed notOpen() {
        return new OrderFailed("container " + container + " has no open IOMMU");
    }

    /** Carry out an order on the open IOMMU; a refusal is an {@link OrderFailed}. */
    private OrderReply order(Supplier<OrderReply> work) {
        if (iommu == null) {
            return notOpen();
        }
        try {
            return work.get();
        } catch (RuntimeException e) {
            return new OrderFailed(e.getMessage());
        }
    }

    private Behavior<Command> onPostStop() {
        if (iommu != null) {
            long pinned = closeIommu();
            getContext().getLog().info("Container {} stopped with its IOMMU open; closed it ({} bytes unpinned)",
                    container, pinned);
        }
        return this;
    }

    // ---- the public requests ----

    private Behavior<Command> onMapDma(MapDma map) {
        serve(map.replyTo(), MapResult.class, io -> {
            io.map(map.iova(), map.host(), map.permissions());
            return new Mapped(map.iova());
        });
        return this;
    }

    private Behavior<Command> onUnmapDma(UnmapDma unmap) {
        serve(unmap.replyTo(), UnmapResult.class, io -> new Unmapped(io.unmap(unmap.iova())));
        return this;
    }

    private Behavior<Command> onDmaRead(DmaRead read) {
        serve(read.replyTo(), ReadResult.class, io -> new DataRead(read.iova(),
                port(io).read(read.iova(), read.length())));
        return this;
    }

    private Behavior<Command> onDmaWrite(DmaWrite write) {
        serve(write.replyTo(), WriteResult.class, io -> {
            byte[] data = write.data();
            port(io).write(write.iova(), data);
            return new DataWritten(write.iova(), data.length);
        });
        return this;
    }

    private Behavior<Command> onAudit(Audit audit) {
        // One handler for the whole audit: nothing else touches the IOMMU until it is done.
        serve(audit.replyTo(), AuditResult.class, io -> {
            List<DmaMapping> mappings = io.mappings().stream()
                    .filter(m -> audit.within().map(w -> w.contains(m.iova())).orElse(true)).toList();
            DmaPort device = port(io);
            CoherenceReport report = audit.atMap().isPresent()
                    ? CoherenceAudit.audit(mappings, device, audit.cpu(), audit.atMap().get())
                    : CoherenceAudit.audit(mappings, device, audit.cpu());
            return new Audited(mappings, report);
        });
        return this;
    }

    private Behavior<Command> onTakePfnLedger(TakePfnLedger take) {
        serve(take.replyTo(), LedgerResult.class, io -> new LedgerTaken(
                CoherenceAudit.PfnLedger.take(io.mappings(), take.cpu())));
        return this;
    }

    private Behavior<Command> onOpenVfioDevice(OpenVfioDevice open) {
        serve(open.replyTo(), DeviceResult.class, io -> type1(io, "open a VFIO device",
                t -> new VfioDeviceOpened(t.group(open.group()).openDevice(open.device()))));
        return this;
    }

    private Behavior<Command> onReadKernelInfo(ReadKernelInfo read) {
        serve(read.replyTo(), KernelInfoResult.class, io -> type1(io, "ask the kernel for its IOMMU info",
                t -> new KernelInfo(t.container().iommuInfo())));
        return this;
    }

    private Behavior<Command> onKernelMap(KernelMap map) {
        serve(map.replyTo(), KernelMapResult.class, io -> type1(io, "map DMA in the kernel", t -> {
            t.container().mapDma(map.host().value(), map.iova(), map.size(),
                    VfioAbi.DmaMap.FLAG_READ | VfioAbi.DmaMap.FLAG_WRITE);
            t.container().unmapDma(map.iova(), map.size());
            return new KernelMapAccepted(map.iova(), map.size());
        }));
        return this;
    }

    private <R> R type1(Iommu io, String what, Function<VfioType1Iommu, R> work) {
        if (io instanceof VfioType1Iommu type1) {
            return work.apply(type1);
        }
        throw new UnsupportedOperationException("container " + container + " cannot " + what + ": its backend is "
                + io.backend() + ", not " + VfioType1Iommu.BACKEND);
    }

    private static DmaPort port(Iommu io) {
        return io.dmaPort().orElseThrow(() -> new UnsupportedOperationException("the " + io.backend()
                + " backend has no device data path"));
    }

    /**
     * Run {@code work} on the open IOMMU and answer {@code replyTo} with its result, every failure as a
     * {@link DmaFailed}. A failure no backend declares (a bug) is answered too, and then crashes this actor: the IOMMU's
     * state is unknown, so {@code PostStop} closes it and the container, watching, stops.
     */
    private <R> void serve(ActorRef<R> replyTo, Class<R> result, Function<Iommu, ? extends R> work) {
        if (iommu == null) {
            replyTo.tell(result.cast(closed(container)));
            return;
        }
        R answer;
        try {
            answer = work.apply(iommu);
        } catch (IommuException e) {
            answer = result.cast(new DmaFailed(e.getMessage(), Optional.of(e.kind())));
        } catch (DmaFault | UnsupportedOperationException | IllegalArgumentException
                | NativeException e) {
            answer = result.cast(new DmaFailed(e.getMessage(), Optional.empty()));
        } catch (RuntimeException e) {
            replyTo.tell(result.cast(new DmaFailed("container " + container + "'s IOMMU failed unexpectedly ("
                    + e + "); the IOMMU is closed", Optional.empty())));
            throw e;
        }
        replyTo.tell(answer);
    }

    private static DmaFailed closed(String container) {
        return new DmaFailed("container " + container + " has no open IOMMU: no group is attached",
                Optional.of(IommuException.Kind.CLOSED));
    }

    /**
     * Answer {@code request} with {@code failed}, without an IOMMU: how the container answers a request it cannot
     * hand on (its IOMMU side stopped).
     */
    static void fail(Request request, DmaFailed failed) {
        if (request instanceof MapDma r) {
            r.replyTo().tell(failed);
        } else if (request instanceof UnmapDma r) {
            r.replyTo().tell(failed);
        } else if (request instanceof DmaRead r) {
            r.replyTo().tell(failed);
        } else if (request instanceof DmaWrite r) {
            r.replyTo().tell(failed);
        } else if (request instanceof Audit r) {
            r.replyTo().tell(failed);
        } else if (request instanceof TakePfnLedger r) {
            r.replyTo().tell(failed);
        } else if (request instanceof OpenVfioDevice r) {
            r.replyTo().tell(failed);
        } else if (request instanceof ReadKernelInfo r) {
            r.replyTo().tell(failed);
        } else if (request instanceof KernelMap r) {
            r.replyTo().tell(failed);
        }
    }
}
