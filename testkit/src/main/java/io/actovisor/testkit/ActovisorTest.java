package io.actovisor.testkit;

import java.lang.annotation.ElementType;
import java.lang.annotation.Retention;
import java.lang.annotation.RetentionPolicy;
import java.lang.annotation.Target;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * A test class of VMM components: it gets one {@link org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit}
 * configured for actovisor (a test method or constructor parameter of that type receives it), and after each test
 * the {@link LeakCheck} it started before the test must find nothing leaked. See {@link ActovisorExtension}.
 */
@Target(ElementType.TYPE)
@Retention(RetentionPolicy.RUNTIME)
@ExtendWith(ActovisorExtension.class)
public @interface ActovisorTest {
    /**
     * Run every dispatcher (Pekko's default, actovisor's vCPU and blocking-I/O ones) on one thread, so that a
     * scenario's messages interleave the same way on every run; a failing seed then replays exactly, as long as
     * the scenario does not race timers against replies.
     */
    boolean singleThread() default false;

    /** Check for leaks after each test (default); turn off for a class that deliberately keeps resources. */
    boolean checkLeaks() default true;
}
