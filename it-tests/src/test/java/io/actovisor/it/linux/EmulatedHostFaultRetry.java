package io.actovisor.it.linux;

import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.util.Optional;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.extension.ExtensionContext;
import org.junit.jupiter.api.extension.InvocationInterceptor;
import org.junit.jupiter.api.extension.ReflectiveInvocationContext;

/**
 * Runs a Linux guest test (its {@code @BeforeEach} or the test itself) again, on a fresh VM, when it failed with an
 * {@link EmulatedHostFault} and only then: the emulated KVM host put its own registers into the guest, a fault of the
 * machine under the test that the same test on a new VM does not meet again (docs/linux-guest.md). Any other failure
 * fails the test as it is; at most {@link #PER_CLASS} faults are absorbed per class, and each one is printed in the
 * test's output with its evidence. A class whose tests share one VM implements {@link SharedVm} so the extension can
 * replace the broken VM before the second run.
 */
final class EmulatedHostFaultRetry implements InvocationInterceptor {
    /** How many emulated-host faults one class may absorb; the next one fails its test. */
    static final int PER_CLASS = 2;

    /** A test class whose tests share one VM. */
    interface SharedVm {
        /** Stop the shared VM (whatever its state) and boot a new one. */
        void replaceVm();
    }

    @Override
    public void interceptBeforeEachMethod(Invocation<Void> invocation,
            ReflectiveInvocationContext<Method> invocationContext, ExtensionContext extensionContext) throws Throwable {
        runAgainOnFault(invocation, invocationContext, extensionContext);
    }

    @Override
    public void interceptTestMethod(Invocation<Void> invocation, ReflectiveInvocationContext<Method> invocationContext,
            ExtensionContext extensionContext) throws Throwable {
        runAgainOnFault(invocation, invocationContext, extensionContext);
    }

    private static void runAgainOnFault(Invocation<Void> invocation, ReflectiveInvocationContext<Method> call,
            ExtensionContext context) throws Throwable {
        Throwable failure;
        try {
            invocation.proceed();
            return;
        } catch (Throwable t) {
            failure = t;
        }
        AtomicInteger absorbed = context.getRoot().getStore(ExtensionContext.Namespace.create(
                EmulatedHostFaultRetry.class)).getOrComputeIfAbsent(context.getRequiredTestClass().getName(),
                        k -> new AtomicInteger(), AtomicInteger.class);
        while (true) {
            Optional<EmulatedHostFault> fault = EmulatedHostFault.in(failure);
            if (fault.isEmpty() || absorbed.get() >= PER_CLASS) {
                throw failure;
            }
            int n = absorbed.incrementAndGet();
            System.out.printf("EMULATED HOST FAULT %d of at most %d in %s, %s: %s%n-> %s runs again on a fresh VM%n",
                    n, PER_CLASS, context.getRequiredTestClass().getSimpleName(), call.getExecutable().getName(),
                    fault.get().getMessage(), call.getExecutable().getName());
            Object target = call.getTarget().orElseThrow();
            try {
                if (target instanceof SharedVm shared) {
                    shared.replaceVm();
                }
                Method method = call.getExecutable();
                method.setAccessible(true);
                method.invoke(target, call.getArguments().toArray());
                return;
            } catch (InvocationTargetException e) {
                e.getCause().addSuppressed(failure);
                failure = e.getCause();
            } catch (Throwable t) {
                t.addSuppressed(failure);
                failure = t;
            }
        }
    }
}
