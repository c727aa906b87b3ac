package io.actovisor.testkit;

import io.actovisor.actors.balloon.BalloonActor;
import io.actovisor.actors.memory.AddressSpaceActor;
import io.actovisor.actors.vfio.VfioContainerActor;
import io.actovisor.actors.vfio.VfioGroupActor;
import io.actovisor.devices.iommu.DmaMapping;
import io.actovisor.memory.AddressRange;
import io.actovisor.memory.GuestAddress;
import io.actovisor.memory.Section;
import java.util.ArrayList;
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
 *   <li>Inhibitor counts are exact: the balloon's count equals the attached groups that are not
 *       balloon-compatible, and each group inhibits exactly while it is.</li>
 *   <li>The IOMMU mirrors the flat view: a container with groups maps exactly the RAM and ROM sections,
 *       page-aligned; one without groups maps nothing.</li>
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

    /** Every violation of invariants 1 to 3 in {@code tree} now. */
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
        int expectedInhibitors = 0;
        for (String group : List.copyOf(tree.groups.keySet())) {
            VfioGroupActor.State state = tree.groupState(group);
            boolean pins = state.container().isPresent() && !tree.compatible.getOrDefault(group, false);
            state.container().ifPresent(c -> attachedByContainer.computeIfAbsent(c, k -> new ArrayList<>())
                    .add(group));
            if (pins) {
                expectedInhibitors++;
            }
            if (state.inhibiting() != pins) {
                out.add(new Violation(2, "group " + group + (state.inhibiting() ? " inhibits the balloon although "
                        : " does not inhibit the balloon although ") + (pins ? "it is attached and pins"
                        : "it pins nothing"), List.of(), List.of()));
            }
        }
        BalloonActor.BalloonStatus balloon = tree.balloonStatus();
        if (balloon.inhibitors() != expectedInhibitors) {
            out.add(new Violation(2, "the balloon counts " + balloon.inhibitors() + " inhibitors " + balloon.holders()
                    + " but " + expectedInhibitors + " attached groups pin", List.of(), List.of()));
        }
        out.addAll(mirrors(sections, List.copyOf(tree.containers.keySet()), tree::containerState,
                attachedByContainer));
        long mapped = ActorTree.expectedMappings(sections).stream().mapToLong(m -> m.iova().size()).sum();
        long expectedPins = attachedByContainer.keySet().stream().filter(tree.containers::containsKey).count() * mapped;
        if (tree.pins.pinnedBytes() != expectedPins) {
            out.add(new Violation(6, "the watched IOMMUs pin " + tree.pins.pinnedBytes() + " bytes, but the live "
                    + "containers with groups should pin " + expectedPins + ": pinned " + tree.pins.pinned(),
                    List.of(), List.of()));
        }
        return out;
    }

    /** Invariant 3 for each container: its mappings against what the flat view's sections require. */
    static List<Violation> mirrors(List<Section> sections, List<String> containers,
            Function<String, VfioContainerActor.State> state, Map<String, List<String>> attachedByContainer) {
        List<Violation> out = new ArrayList<>();
        List<DmaMapping> expected = ActorTree.expectedMappings(sections);
        for (String container : containers) {
            VfioContainerActor.State s = state.apply(container);
            boolean attached = !attachedByContainer.getOrDefault(container, List.of()).isEmpty()
                    || !s.groups().isEmpty();
            List<DmaMapping> want = attached ? expected : List.of();
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
        int expectedInhibitors = 0;
        for (var group : components.groups().entrySet()) {
            VfioGroupActor.State state = vm.ask(VfioGroupActor.State.class, VfioGroupActor.GetState::new,
                    group.getValue());
            boolean pins = state.container().isPresent() && !state.balloonCompatible();
            state.container().ifPresent(c -> attachedByContainer.computeIfAbsent(c, k -> new ArrayList<>())
                    .add(group.getKey()));
            if (pins) {
                expectedInhibitors++;
            }
            if (state.inhibiting() != pins) {
                out.add(new Violation(2, "group " + group.getKey() + (state.inhibiting() ? " inhibits" : " does not "
                        + "inhibit") + " the balloon although it " + (pins ? "is attached and pins" : "pins nothing"),
                        List.of(), List.of()));
            }
        }
        if (components.balloon().isPresent()) {
            BalloonActor.BalloonStatus balloon = vm.balloonStatus();
            if (balloon.inhibitors() != expectedInhibitors) {
                out.add(new Violation(2, "the balloon counts " + balloon.inhibitors() + " inhibitors "
                        + balloon.holders() + " but " + expectedInhibitors + " attached groups pin", List.of(),
                        List.of()));
            }
        }
        out.addAll(mirrors(sections, List.copyOf(components.containers().keySet()), name -> vm.ask(
                VfioContainerActor.State.class, VfioContainerActor.GetState::new, components.containers().get(name)),
                attachedByContainer));
        return out;
    }
}
