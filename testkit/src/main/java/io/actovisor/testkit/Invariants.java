package io.actovisor.testkit;

import io.actovisor.actors.discard.DiscardManager;
import io.actovisor.actors.discard.DiscardMode;
import io.actovisor.actors.discard.DiscardState;
import io.actovisor.actors.memory.AddressSpaceActor;
import io.actovisor.actors.vfio.VfioContainerActor;
import io.actovisor.actors.vfio.VfioGroupActor;
import io.actovisor.devices.iommu.DmaMapping;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.GuestAddress;
import io.actovisor.memory.Section;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.function.Function;

/**
 * The design's invariants as a library: {@link #check} evaluates them on a live tree at a quiescent point and
 * returns every violation with the guest pages or IOMMU mappings involved (an empty list: all hold).
 * <ol>
 *   <li>No discard under pin: each discard of host memory that an IOMMU held pinned, as the guest pages it hit
 *       (with {@code unsafe-ignore-inhibitor}, exactly the ballooned pages that were pinned).</li>
 *   <li>Discard-disable counts are exact: the discard manager's {@link DiscardState} counts, for each holder kind,
 *       exactly the attached groups whose discard mode registers that kind ({@code inhibit}: uncoordinated
 *       discards disabled; {@code coordinated}: coordinated discards required; {@code on-demand}: none), and each
 *       group holds a registration exactly while it is attached in a mode that registers.</li>
 *   <li>The IOMMU mirrors the flat view: a container with groups maps exactly the RAM and ROM sections,
 *       page-aligned (a {@code coordinated} one in blocks of the manager's block size, without the blocks it
 *       released for a discard); one without groups maps nothing.</li>
 * </ol>
 * and, for the tree, invariant 6 for pins: the watched IOMMUs pin exactly what the live containers with groups map
 * (a stopped or crashed container has unpinned everything).
 */
public final class Invariants {
    private Invariants() {
    }

    /**
     * One broken invariant.
     *
     * @param invariant  its number in the design (1, 2, 3 or 6)
     * @param guestPages the guest page frame numbers involved (invariant 1)
     * @param mappings   the IOMMU mappings involved: present where none should be, or missing (invariant 3)
     */
    public record Violation(int invariant, String description, List<Long> guestPages, List<DmaMapping> mappings) {
        public Violation {
            Objects.requireNonNull(description, "description");
            guestPages = List.copyOf(guestPages);
            mappings = List.copyOf(mappings);
        }
    }

    /** Every violation of invariants 1, 2, 3 and 6 (pins) in {@code tree} now. */
    public static List<Violation> check(ActorTree tree) {
        List<Violation> out = new ArrayList<>();
        List<Section> sections = tree.view().flatView().sections();
        for (PinWatch.DiscardUnderPin d : tree.pins.discardsUnderPin()) {
            List<Long> pages = guestPages(sections, d.overlap());
            out.add(new Violation(1, "host " + d.discarded() + " was discarded while " + d.pinned()
                    + " was pinned by " + d.iommu() + ": the device sees stale memory at guest pages "
                    + pages.stream().map(p -> "0x" + Long.toHexString(p)).toList(), pages, List.of()));
        }
        Map<String, List<String>> attachedByContainer = new LinkedHashMap<>();
        Map<DiscardManager.HolderKind, Integer> expected = new EnumMap<>(DiscardManager.HolderKind.class);
        for (String group : List.copyOf(tree.groups.keySet())) {
            VfioGroupActor.State state = tree.groupState(group);
            DiscardMode mode = tree.modes.getOrDefault(group, state.mode());
            registration(group, mode, state, attachedByContainer, expected).ifPresent(out::add);
        }
        DiscardState discard = tree.discardState();
        out.addAll(counts(discard, expected));
        List<String> containers = List.copyOf(tree.containers.keySet());
        Map<String, VfioContainerActor.State> states = new LinkedHashMap<>();
        for (String container : containers) {
            states.put(container, tree.containerState(container));
        }
        out.addAll(mirrors(sections, containers, states::get, attachedByContainer, discard.blockSize()));
        List<DmaMapping> all = ActorTree.expectedMappings(sections);
        long expectedPins = 0;
        for (String container : containers) {
            if (attachedByContainer.containsKey(container)) {
                expectedPins += required(all, states.get(container), discard.blockSize()).stream()
                        .mapToLong(m -> m.iova().size()).sum();
            }
        }
        if (tree.pins.pinnedBytes() != expectedPins) {
            out.add(new Violation(6, "the watched IOMMUs pin " + tree.pins.pinnedBytes() + " bytes, but the live "
                    + "containers with groups should pin " + expectedPins + ": pinned " + tree.pins.pinned(),
                    List.of(), List.of()));
        }
        return out;
    }

    /**
     * Record group {@code group}'s attachment and the holder kind it should register; the violation of invariant 2
     * if its registration does not match (registered exactly while attached in a mode that registers).
     */
    private static java.util.Optional<Violation> registration(String group, DiscardMode mode,
            VfioGroupActor.State state, Map<String, List<String>> attachedByContainer,
            Map<DiscardManager.HolderKind, Integer> expected) {
        state.container().ifPresent(c -> attachedByContainer.computeIfAbsent(c, k -> new ArrayList<>()).add(group));
        boolean holds = state.container().isPresent() && mode.holderKind().isPresent();
        if (holds) {
            expected.merge(mode.holderKind().get(), 1, Integer::sum);
        }
        if (state.inhibiting() == holds) {
            return java.util.Optional.empty();
        }
        return java.util.Optional.of(new Violation(2, "group " + group + " (discard = " + mode.configName() + ") "
                + (state.inhibiting() ? "holds a discard registration although it is "
                        + (state.container().isPresent() ? "in a mode that registers none" : "not attached")
                        : "holds no discard registration although it is attached"), List.of(), List.of()));
    }

    /** Invariant 2 on the manager's counts: each kind's count against the attached groups of that kind. */
    private static List<Violation> counts(DiscardState discard, Map<DiscardManager.HolderKind, Integer> expected) {
        List<Violation> out = new ArrayList<>();
        int uncoordinated = expected.getOrDefault(DiscardManager.HolderKind.UNCOORDINATED_DISABLED, 0);
        if (discard.uncoordinatedHolders() != uncoordinated) {
            out.add(new Violation(2, "the discard manager counts " + discard.uncoordinatedHolders() + " holders "
                    + "disabling uncoordinated discards but " + uncoordinated + " attached groups in discard = inhibit "
                    + "pin; holders " + discard.holderNames(), List.of(), List.of()));
        }
        int coordinated = expected.getOrDefault(DiscardManager.HolderKind.COORDINATED_REQUIRED, 0);
        if (discard.coordinatedHolders() != coordinated) {
            out.add(new Violation(2, "the discard manager counts " + discard.coordinatedHolders() + " holders "
                    + "requiring coordinated discards but " + coordinated + " attached groups in discard = "
                    + "coordinated pin; holders " + discard.holderNames(), List.of(), List.of()));
        }
        return out;
    }

    /**
     * What container state {@code s} must map of {@code expected}: all of it, or for a {@code coordinated}
     * container, split into blocks of {@code blockSize} without the blocks it released.
     */
    static List<DmaMapping> required(List<DmaMapping> expected, VfioContainerActor.State s, long blockSize) {
        return s.discard() == DiscardMode.COORDINATED ? ActorTree.inBlocks(expected, blockSize, s.releasedBlocks())
                : expected;
    }

    /** Invariant 3 for each container: its mappings against what the flat view's sections require. */
    static List<Violation> mirrors(List<Section> sections, List<String> containers,
            Function<String, VfioContainerActor.State> state, Map<String, List<String>> attachedByContainer,
            long blockSize) {
        List<Violation> out = new ArrayList<>();
        List<DmaMapping> expected = ActorTree.expectedMappings(sections);
        for (String container : containers) {
            VfioContainerActor.State s = state.apply(container);
            boolean attached = !attachedByContainer.getOrDefault(container, List.of()).isEmpty()
                    || !s.groups().isEmpty();
            List<DmaMapping> want = attached ? required(expected, s, blockSize) : List.of();
            List<DmaMapping> extra = new ArrayList<>(s.mappings());
            extra.removeAll(want);
            List<DmaMapping> missing = new ArrayList<>(want);
            missing.removeAll(s.mappings());
            if (!extra.isEmpty()) {
                out.add(new Violation(3, "container " + container + " maps " + extra.size() + " ranges the flat view "
                        + "does not have" + (attached ? "" : " (it has no groups)"), List.of(), extra));
            }
            if (!missing.isEmpty()) {
                out.add(new Violation(3, "container " + container + " lacks " + missing.size()
                        + " RAM/ROM ranges of the flat view", List.of(), missing));
            }
        }
        return out;
    }

    /** The guest frames whose host memory lies in {@code host}, through the RAM and ROM sections. */
    static List<Long> guestPages(List<Section> sections, AddressRange host) {
        List<Long> pages = new ArrayList<>();
        for (Section s : sections) {
            if (!s.kind().isMemory()) {
                continue;
            }
            long hostBase = s.hostAddress(new GuestAddress(s.range().base())).value();
            long from = Math.max(hostBase, host.base());
            long to = Math.min(hostBase + s.range().size(), host.base() + host.size());
            for (long h = from; h < to; h += ActorTree.PAGE) {
                pages.add((s.range().base() + (h - hostBase)) / ActorTree.PAGE);
            }
        }
        return pages;
    }

    /**
     * Every violation of invariants 2 and 3 in a running VM now, asked of its components (invariant 1 needs the
     * discards themselves: check an {@link ActorTree}, whose memory the pin watch observes).
     */
    public static List<Violation> check(RunningVm vm) {
        List<Violation> out = new ArrayList<>();
        var components = vm.components();
        List<Section> sections = vm.ask(AddressSpaceActor.View.class, AddressSpaceActor.GetView::new,
                components.memory()).flatView().sections();
        Map<String, List<String>> attachedByContainer = new LinkedHashMap<>();
        Map<DiscardManager.HolderKind, Integer> expected = new EnumMap<>(DiscardManager.HolderKind.class);
        for (var group : components.groups().entrySet()) {
            VfioGroupActor.State state = vm.ask(VfioGroupActor.State.class, VfioGroupActor.GetState::new,
                    group.getValue());
            registration(group.getKey(), state.mode(), state, attachedByContainer, expected).ifPresent(out::add);
        }
        DiscardState discard = vm.ask(DiscardState.class, DiscardManager.GetState::new, components.discardManager());
        out.addAll(counts(discard, expected));
        out.addAll(mirrors(sections, List.copyOf(components.containers().keySet()), name -> vm.ask(
                VfioContainerActor.State.class, VfioContainerActor.GetState::new, components.containers().get(name)),
                attachedByContainer, discard.blockSize()));
        return out;
    }
}
