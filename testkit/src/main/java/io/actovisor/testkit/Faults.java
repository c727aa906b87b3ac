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

    /**
     * Crash (throw) on the {@code nth} message (from 1) {@code behavior} receives, whatever it is; the supervisor's
     * strategy then applies (by default the actor stops, and whoever watches it is told).
     */
    public static <T> Behavior<T> crashAt(Class<T> protocol, int nth, Behavior<T> behavior) {
        if (nth < 1) {
            throw new IllegalArgumentException("messages are counted from 1, not " + nth);
        }
        java.util.concurrent.atomic.AtomicInteger received = new java.util.concurrent.atomic.AtomicInteger();
        return Behaviors.intercept(() -> new BehaviorInterceptor<T, T>(protocol) {
            @Override
            public Behavior<T> aroundReceive(TypedActorContext<T> ctx, T msg, ReceiveTarget<T> target) {
                if (received.incrementAndGet() == nth) {
                    throw new InjectedFault("injected crash of " + ctx.asJava().getSelf().path().name()
                            + " at message #" + nth + " (" + msg.getClass().getSimpleName() + ")");
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
