package io.actovisor.actors.testing;

import io.actovisor.memory.sys.Posix;
import io.actovisor.memory.testing.NativeRequirement;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;

/** The ActorTestKit of tests over real host memory: skipped (or failed under ACTOVISOR_REQUIRE_NATIVE=1) without it. */
public final class NativeTestKit {
    private NativeTestKit() {
    }

    public static ActorTestKit start() {
        NativeRequirement.require("host memory (mmap, madvise)", Posix.unavailabilityCause());
        return ActorTestKit.create();
    }

    public static void stop(ActorTestKit kit) {
        if (kit != null) {
            kit.shutdownTestKit();
        }
    }
}
