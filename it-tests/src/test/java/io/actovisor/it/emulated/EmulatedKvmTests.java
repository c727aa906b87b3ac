package io.actovisor.it.emulated;

/**
 * The entry through which the build reaches {@link EmulatedKvmEngine}: surefire selects this class (its name matches
 * the default {@code *Tests} pattern), and the engine answers by discovering every {@code kvm}-tagged test class on
 * the class path, to run them in the emulated KVM host when this machine runs its KVM tests there (see
 * {@code docs/testing.md}). It holds no tests of its own.
 */
public final class EmulatedKvmTests {
    private EmulatedKvmTests() {
    }
}
