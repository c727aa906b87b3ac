package io.actovisor.config;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import com.typesafe.config.ConfigFactory;
import java.util.List;
import java.util.OptionalLong;
import org.junit.jupiter.api.Test;

/** {@code guest.kind}: its default, each spelling, a bad value, and the round trip through the renderer. */
class GuestKindTest {
    private static VmSpec parse(String hocon) {
        return VmSpecParser.parse(ConfigFactory.parseString(hocon), OptionalLong.of(1L << 30));
    }

    @Test
    void theDefaultIsAuto() {
        assertEquals(GuestKind.AUTO, parse("actovisor.vm { name = k }").guest().kind());
        assertEquals(GuestKind.AUTO, VmSpecParser.defaultVm().guest().kind(), "the embedded default VM uses auto");
    }

    @Test
    void eachKindParsesFromItsSpelling() {
        for (GuestKind kind : GuestKind.values()) {
            assertEquals(kind, parse("actovisor.vm { name = k, guest.kind = " + kind.configName() + " }").guest()
                    .kind());
        }
    }

    @Test
    void anUnknownKindNamesTheFieldAndTheValidOnes() {
        List<ConfigError> errors = assertThrows(ConfigValidationException.class,
                () -> parse("actovisor.vm { name = k, guest.kind = qemu }")).errors();
        assertEquals(1, errors.size(), errors.toString());
        ConfigError error = errors.get(0);
        assertEquals(List.of("actovisor.vm.guest.kind", "qemu", "must be one of [auto, firmware, scripted, linux]", 1),
                List.of(error.path(), error.value(), error.message(), error.line()));
    }

    @Test
    void theRendererWritesTheKindBack() {
        VmSpec spec = parse("actovisor.vm { name = k, guest.kind = scripted }");
        assertEquals(spec, VmSpecParser.parseString(VmSpecRenderer.render(spec)));
    }
}
