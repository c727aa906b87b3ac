package io.actovisor.actors.device;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.ConfigFactory;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;

class DeviceTimeoutsTest {
    @Test
    void everyOuterWaitIsLongerThanTheWaitInsideItWhateverTheStep() {
        for (Duration step : List.of(Duration.ofMillis(1), Duration.ofMillis(20), Duration.ofSeconds(5),
                Duration.ofMinutes(3))) {
            DeviceTimeouts t = new DeviceTimeouts(step);
            List<Duration> chain = List.of(t.balloonDecision(), t.balloonReclaim(), t.deviceRestore(),
                    t.deviceOnBalloon(), t.vcpuOnDevice());
            for (int i = 1; i < chain.size(); i++) {
                assertTrue(chain.get(i).compareTo(chain.get(i - 1)) > 0, "step " + step + ": " + chain);
            }
            // A DMA transfer may queue behind a container's release round.
            assertTrue(t.deviceDma().compareTo(t.containerRelease()) > 0, "step " + step);
        }
    }

    @Test
    void theStepComesFromTheConfigurationAndTheDefaultIsTheReferenceOne() {
        assertEquals(DeviceTimeouts.DEFAULT, DeviceTimeouts.of(ConfigFactory.load()));
        DeviceTimeouts t = DeviceTimeouts.of(ConfigFactory.parseString(DeviceTimeouts.KEY + " = 2s"));
        assertEquals(Duration.ofSeconds(14), t.vcpuOnDevice());
        assertEquals(Duration.ofSeconds(12), t.deviceOnBalloon());
    }

    @Test
    void aStepThatIsNotPositiveIsRefusedNamingTheSetting() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> DeviceTimeouts.of(ConfigFactory.parseString(DeviceTimeouts.KEY + " = 0s")));
        assertEquals("actovisor.timeouts.device-step must be positive, was PT0S", e.getMessage());
    }
}
