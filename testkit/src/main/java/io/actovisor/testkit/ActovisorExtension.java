package io.actovisor.testkit;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import io.actovisor.memory.sys.Posix;
import java.util.List;
import java.util.Optional;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.junit.jupiter.api.extension.AfterAllCallback;
import org.junit.jupiter.api.extension.AfterEachCallback;
import org.junit.jupiter.api.extension.BeforeAllCallback;
import org.junit.jupiter.api.extension.BeforeEachCallback;
import org.junit.jupiter.api.extension.ExtensionContext;
import org.junit.jupiter.api.extension.ParameterContext;
import org.junit.jupiter.api.extension.ParameterResolutionException;
import org.junit.jupiter.api.extension.ParameterResolver;
import org.opentest4j.AssertionFailedError;

/**
 * The JUnit 5 extension behind {@link ActovisorTest}: before the class, one {@code ActorTestKit} whose system
 * carries actovisor's configuration (its dispatchers; on one thread with {@code singleThread}); before each test,
 * a {@link LeakCheck}; after each test, the test fails if anything leaked, naming each resource. Test methods and
 * constructors may take {@link ActorTestKit} and {@link LeakCheck} parameters. Without usable host memory (no
 * libc through JNA) the class is skipped with the reason, or fails under {@code ACTOVISOR_REQUIRE_NATIVE=1}.
 */
public final class ActovisorExtension implements BeforeAllCallback, AfterAllCallback, BeforeEachCallback,
        AfterEachCallback, ParameterResolver {
    private static final ExtensionContext.Namespace NAMESPACE = ExtensionContext.Namespace.create(
            ActovisorExtension.class);

    /** The configuration of a test kit's actor system: actovisor's, with every dispatcher on one thread if asked. */
    public static Config config(boolean singleThread) {
        Config base = ConfigFactory.load();
        if (!singleThread) {
            return base;
        }
        return ConfigFactory.parseString("""
                pekko.actor.default-dispatcher {
                  executor = "thread-pool-executor"
                  thread-pool-executor.fixed-pool-size = 1
                }
                actovisor.dispatchers.blocking-io.thread-pool-executor.fixed-pool-size = 1
                """).withFallback(base);
    }

    private static Optional<ActovisorTest> settings(ExtensionContext context) {
        return context.getTestClass().map(c -> c.getAnnotation(ActovisorTest.class));
    }

    @Override
    public void beforeAll(ExtensionContext context) {
        NativeRequirement.require("host memory (mmap, madvise)", Posix.unavailabilityCause());
        boolean singleThread = settings(context).map(ActovisorTest::singleThread).orElse(false);
        String name = context.getRequiredTestClass().getSimpleName().replaceAll("[^A-Za-z0-9-]", "-");
        ActorTestKit kit = ActorTestKit.create(name, config(singleThread));
        context.getStore(NAMESPACE).put(ActorTestKit.class, kit);
    }

    @Override
    public void afterAll(ExtensionContext context) {
        ActorTestKit kit = context.getStore(NAMESPACE).remove(ActorTestKit.class, ActorTestKit.class);
        if (kit != null) {
            kit.shutdownTestKit();
        }
    }

    @Override
    public void beforeEach(ExtensionContext context) {
        context.getStore(NAMESPACE).put(LeakCheck.class, LeakCheck.start());
    }

    @Override
    public void afterEach(ExtensionContext context) {
        LeakCheck check = context.getStore(NAMESPACE).remove(LeakCheck.class, LeakCheck.class);
        if (check == null || !settings(context).map(ActovisorTest::checkLeaks).orElse(true)
                || context.getExecutionException().isPresent()) {
            return;
        }
        List<String> leaks = check.awaitNoLeaks();
        if (!leaks.isEmpty()) {
            throw new AssertionFailedError(context.getDisplayName() + " leaked " + leaks.size()
                    + (leaks.size() == 1 ? " resource: " : " resources: ") + String.join("; ", leaks));
        }
    }

    @Override
    public boolean supportsParameter(ParameterContext parameter, ExtensionContext context) {
        Class<?> type = parameter.getParameter().getType();
        return type == ActorTestKit.class || type == LeakCheck.class;
    }

    @Override
    public Object resolveParameter(ParameterContext parameter, ExtensionContext context) {
        Class<?> type = parameter.getParameter().getType();
        Object value = type == ActorTestKit.class ? kit(context) : context.getStore(NAMESPACE).get(LeakCheck.class);
        if (value == null) {
            throw new ParameterResolutionException("no " + type.getSimpleName() + " here: the ActorTestKit exists from"
                    + " @BeforeAll on, a LeakCheck only inside a test");
        }
        return value;
    }

    private static ActorTestKit kit(ExtensionContext context) {
        for (Optional<ExtensionContext> c = Optional.of(context); c.isPresent(); c = c.get().getParent()) {
            ActorTestKit kit = c.get().getStore(NAMESPACE).get(ActorTestKit.class, ActorTestKit.class);
            if (kit != null) {
                return kit;
            }
        }
        return null;
    }
}
