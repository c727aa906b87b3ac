package io.actovisor.actors.kvm;

import io.actovisor.actors.memory.AddressSpaceActor;
import io.actovisor.actors.memory.MemoryListener;
import io.actovisor.kernel.kvm.KvmVm;
import io.actovisor.kernel.kvm.MemorySlot;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.HostMemory;
import io.actovisor.memory.Section;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;

/**
 * Mirrors an address space into KVM memory slots: each RAM section becomes a slot, each ROM section a read-only
 * slot ({@code KVM_MEM_READONLY}: guest writes exit as MMIO); removed sections lose their slots. It takes part in
 * atomic commits: if KVM refuses a slot, the actor undoes what the update did and refuses it. It subscribes first
 * (priority 0), so guest memory exists for the vCPUs before anything pins it.
 */
public final class KvmMemoryActor extends AbstractBehavior<KvmMemoryActor.Command> {
    /** Listener priority: before containers (10) and the balloon (100). */
    public static final int LISTENER_PRIORITY = 0;
    private static final String NAME = "kvm-memory";

    /** What the actor accepts. */
    public sealed interface Command {
    }

    /** Ask for the current slots. */
    public record GetSlots(ActorRef<List<MemorySlot>> replyTo) implements Command {
    }

    private record Update(MemoryListener.Update update) implements Command {
    }

    private enum Ignore implements Command {
        INSTANCE
    }

    private final KvmVm vm;
    /** Slots by the guest base of the section they mirror. */
    private final Map<Long, MemorySlot> bySection = new HashMap<>();

    private KvmMemoryActor(ActorContext<Command> context, KvmVm vm, ActorRef<AddressSpaceActor.Command> memory,
            Optional<ActorRef<AddressSpaceActor.SubscribeResult>> subscribed) {
        super(context);
        this.vm = vm;
        ActorRef<MemoryListener.Update> adapter = context.messageAdapter(MemoryListener.Update.class, Update::new);
        ActorRef<AddressSpaceActor.SubscribeResult> replyTo = subscribed.orElseGet(() ->
                context.messageAdapter(AddressSpaceActor.SubscribeResult.class, r -> Ignore.INSTANCE));
        memory.tell(new AddressSpaceActor.Subscribe(NAME, LISTENER_PRIORITY, adapter, context.getSelf(), replyTo));
    }

    /**
     * Slots of {@code vm} mirroring {@code memory}; {@code subscribed} hears when the initial view is applied (or
     * refused).
     */
    public static Behavior<Command> create(KvmVm vm, ActorRef<AddressSpaceActor.Command> memory,
            Optional<ActorRef<AddressSpaceActor.SubscribeResult>> subscribed) {
        return Behaviors.setup(context -> new KvmMemoryActor(context, vm, memory, subscribed));
    }

    @Override
    public Receive<Command> createReceive() {
        return newReceiveBuilder()
                .onMessage(Update.class, this::onUpdate)
                .onMessage(GetSlots.class, this::onGetSlots)
                .onMessageEquals(Ignore.INSTANCE, () -> this)
                .build();
    }

    private Behavior<Command> onUpdate(Update wrapped) {
        MemoryListener.Update u = wrapped.update();
        List<MemorySlot> removed = new ArrayList<>();
        List<Section> added = new ArrayList<>();
        try {
            for (Section s : u.regionDel()) {
                MemorySlot slot = bySection.remove(s.range().base());
                if (slot != null && s.kind().isMemory()) {
                    vm.removeMemorySlot(slot.slot());
                    removed.add(slot);
                }
            }
            for (Section s : u.regionAdd()) {
                if (!s.kind().isMemory()) {
                    continue;
                }
                Optional<AddressRange> aligned = s.range().alignInward(HostMemory.PAGE_SIZE);
                if (aligned.isEmpty()) {
                    continue;
                }
                int slot = vm.freeSlot();
                if (slot < 0) {
                    throw new IllegalStateException("every one of the VM's " + vm.maxMemorySlots()
                            + " KVM memory slots is in use");
                }
                AddressRange range = aligned.get();
                MemorySlot made = vm.setMemorySlot(slot, range, s.hostBase().orElseThrow().checkedAdd(range.base()
                        - s.range().base()), s.region().readOnly());
                bySection.put(s.range().base(), made);
                added.add(s);
            }
        } catch (RuntimeException e) {
            for (Section s : added) {
                vm.removeMemorySlot(bySection.remove(s.range().base()).slot());
            }
            for (MemorySlot slot : removed) {
                bySection.put(slot.guest().base(), vm.setMemorySlot(slot.slot(), slot.guest(), slot.host(),
                        slot.readOnly()));
            }
            String reason = "KVM refused the memory slots of commit " + u.commitId() + ": " + e.getMessage();
            getContext().getLog().warn(reason);
            u.replyTo().tell(new MemoryListener.Refused(u.commitId(), NAME, reason));
            return this;
        }
        u.replyTo().tell(new MemoryListener.Applied(u.commitId(), NAME));
        return this;
    }

    private Behavior<Command> onGetSlots(GetSlots get) {
        get.replyTo().tell(List.copyOf(vm.memorySlots().values()));
        return this;
    }
}
