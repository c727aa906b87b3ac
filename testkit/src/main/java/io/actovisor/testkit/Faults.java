package io.actovisor.testkit;

import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.BehaviorInterceptor;
import org.apache.pekko.actor.typed.TypedActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;

/** Fault injection by interception: the actor under test is unchanged, the interceptor throws in front of it. */
public final class Faults {
    private Faults() {
    }

    /** Crash (throw) when a message whose class is called {@code simpleName} arrives, instead of handling it. */
    public static <T> Behavior<T> crashOn(Class<T> protocol, String simpleName, Behavior<T> behavior) {
        return Behaviors.intercept(() -> new BehaviorInterceptor<T, T>(protocol) {
            @Override
            public Behavior<T> aroundReceive(TypedActorContext<T> ctx, T msg, ReceiveTarget<T> target) {
                if (msg.getClass().getSimpleName().equals(simpleName)) {
                    throw new InjectedFault("injected crash on " + simpleName);
                }
                return target.apply(ctx, msg);
            }
        }, behavior);
    }

    /** Crash on the next message of any kind once {@code armed} is set. */
    public static <T> Behavior<T> crashWhenArmed(Class<T> protocol, AtomicBoolean armed, Behavior<T> behavior) {
        return Behaviors.intercept(() -> new BehaviorInterceptor<T, T>(protocol) {
            @Override
            public Behavior<T> aroundReceive(TypedActorContext<T> ctx, T msg, ReceiveTarget<T> target) {
                if (armed.get()) {
                    throw new InjectedFault("injected crash on " + msg.getClass().getSimpleName());
                }
                return target.apply(ctx, msg);
            }
        }, behavior);
    }

    /** The exception fault injection throws, so logs show it is deliberate. */
    public static final class InjectedFault extends RuntimeException {
        private static final long serialVersionUID = 1L;

        public InjectedFault(String message) {
            super(message);
        }
    }
}
