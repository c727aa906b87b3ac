package io.actovisor.actors.testing;

import io.actovisor.memory.sys.Posix;
import io.actovisor.memory.testing.NativeRequirement;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.junit.jupiter.api.extension.AfterAllCallback;
import org.junit.jupiter.api.extension.BeforeAllCallback;
import org.junit.jupiter.api.extension.ExtensionContext;

/**
 * The ActorTestKit of a test class over real host memory, as a JUnit extension: the class is skipped (or fails
 * under ACTOVISOR_REQUIRE_NATIVE=1) without host memory, and the kit is shut down after the class. Register it in a
 * static field: {@code @RegisterExtension static final NativeTestKit KIT = new NativeTestKit();}, then use
 * {@link #kit()}.
 */
public final class NativeTestKit implements BeforeAllCallback, AfterAllCallback {
    private ActorTestKit kit;

    @Override
    public void beforeAll(ExtensionContext context) {
        NativeRequirement.require("host memory (mmap, madvise)", Posix.unavailabilityCause());
        kit = ActorTestKit.create();
    }

    @Override
    public void afterAll(ExtensionContext context) {
        if (kit != null) {
            kit.shutdownTestKit();
            kit = null;
        }
    }

    /** The running kit (between the class's before-all and after-all). */
    public ActorTestKit kit() {
        if (kit == null) {
            throw new IllegalStateException("the test kit runs only while its test class does");
        }
        return kit;
    }
}
