package io.actovisor.testkit.scenario;

import io.actovisor.actors.memory.AddressSpaceActor;
import io.actovisor.actors.vfio.VfioGroupActor;
import io.actovisor.testkit.ActorTree;
import java.util.Arrays;

/**
 * One step of a topology scenario on an {@link ActorTree}, printed as a sentence ({@code attach g1 to c0},
 * {@code inflate frames [3, 4]}), so that a shrunk failing scenario reads as what to do to reproduce it.
 */
public sealed interface Step {
    /** Apply this step to {@code tree}; it waits for the answer. */
    void apply(ActorTree tree);

    /** Attach group {@code group} to container {@code container}. */
    record Attach(String group, String container) implements Step {
        @Override
        public void apply(ActorTree tree) {
            tree.attach(group, container);
        }

        @Override
        public String toString() {
            return "attach " + group + " to " + container;
        }
    }

    /** Detach group {@code group} from its container. */
    record Detach(String group) implements Step {
        @Override
        public void apply(ActorTree tree) {
            tree.ask(VfioGroupActor.DetachResult.class, VfioGroupActor.Detach::new, tree.groups.get(group));
        }

        @Override
        public String toString() {
            return "detach " + group;
        }
    }

    /** The guest gives frames to the balloon. */
    record Inflate(long[] frames) implements Step {
        public Inflate {
            frames = frames.clone();
        }

        @Override
        public void apply(ActorTree tree) {
            tree.inflate(frames.clone());
        }

        @Override
        public String toString() {
            return "inflate frames " + Arrays.toString(frames);
        }

        @Override
        public boolean equals(Object o) {
            return o instanceof Inflate other && Arrays.equals(frames, other.frames);
        }

        @Override
        public int hashCode() {
            return Arrays.hashCode(frames);
        }
    }

    /** The guest takes frames back from the balloon. */
    record Deflate(long[] frames) implements Step {
        public Deflate {
            frames = frames.clone();
        }

        @Override
        public void apply(ActorTree tree) {
            tree.deflate(frames.clone());
        }

        @Override
        public String toString() {
            return "deflate frames " + Arrays.toString(frames);
        }

        @Override
        public boolean equals(Object o) {
            return o instanceof Deflate other && Arrays.equals(frames, other.frames);
        }

        @Override
        public int hashCode() {
            return Arrays.hashCode(frames);
        }
    }

    /** Commit a RAM region {@code name} of {@code pages} at guest page {@code gpaPage} (host page {@code hostPage}). */
    record AddRegion(String name, long gpaPage, long hostPage, long pages) implements Step {
        @Override
        public void apply(ActorTree tree) {
            tree.commit(new AddressSpaceActor.AddRegion(tree.ram(name, gpaPage, hostPage, pages)));
        }

        @Override
        public String toString() {
            return "add RAM region " + name + " of " + pages + " pages at guest page " + gpaPage;
        }
    }

    /** Commit the removal of region {@code name}. */
    record RemoveRegion(String name) implements Step {
        @Override
        public void apply(ActorTree tree) {
            tree.commit(new AddressSpaceActor.RemoveRegion(name));
        }

        @Override
        public String toString() {
            return "remove region " + name;
        }
    }
}
