package io.actovisor.it.emulated;

import org.junit.platform.engine.TestDescriptor;
import org.junit.platform.engine.TestSource;
import org.junit.platform.engine.UniqueId;
import org.junit.platform.engine.support.descriptor.AbstractTestDescriptor;

/**
 * A Jupiter test or container as this engine reports it: the same display name, source and type, under this
 * engine's unique id, so that surefire files its result under the test's own class and method.
 */
final class MirroredDescriptor extends AbstractTestDescriptor {
    private final Type type;
    private final String legacyName;

    MirroredDescriptor(UniqueId id, String displayName, String legacyName, TestSource source, Type type) {
        super(id, displayName, source);
        this.type = type;
        this.legacyName = legacyName;
    }

    @Override
    public Type getType() {
        return type;
    }

    @Override
    public String getLegacyReportingName() {
        return legacyName;
    }

    @Override
    public boolean mayRegisterTests() {
        return type != Type.TEST;
    }

    /** The id under {@code engine} of the guest's (or Jupiter's) id {@code original}: its segments below the engine. */
    static UniqueId translate(UniqueId engine, UniqueId original) {
        UniqueId id = engine;
        for (UniqueId.Segment segment : original.getSegments().subList(1, original.getSegments().size())) {
            id = id.append(segment);
        }
        return id;
    }

    static MirroredDescriptor of(UniqueId engine, TestDescriptor jupiter) {
        return new MirroredDescriptor(translate(engine, jupiter.getUniqueId()), jupiter.getDisplayName(),
                jupiter.getLegacyReportingName(), jupiter.getSource().orElse(null), jupiter.getType());
    }
}
