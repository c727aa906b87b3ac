package io.actovisor.kernel.vfio;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.actovisor.memory.sys.Errno;
import java.nio.file.Path;
import java.util.Map;
import java.util.Optional;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Each reason the availability probes give, scripted, and that no probe leaves an fd open. */
class VfioAvailabilityTest {
    @TempDir
    Path root;

    private String cause(RecordingPosix posix, int group) {
        Optional<String> cause = Vfio.groupUnavailabilityCause(posix, root, group);
        assertEquals(Map.of(), posix.openFds(), "the probe leaves fds open");
        return cause.orElse("available");
    }

    @Test
    void aHealthyHostIsAvailable() {
        RecordingPosix posix = ScriptedVfioHost.create(root, 3);
        assertEquals(Optional.empty(), Vfio.containerUnavailabilityCause(posix, root));
        assertEquals("available", cause(posix, 3));
        assertEquals(0, posix.ioctls("VFIO_GROUP_SET_CONTAINER").size(), "probing attaches nothing");
    }

    @Test
    void eachReasonIsNamed() {
        Path none = root.resolve("absent");
        assertTrue(Vfio.containerUnavailabilityCause(new RecordingPosix(), none).orElseThrow()
                .startsWith("no " + none + ": the host has no VFIO"));
        assertTrue(cause(ScriptedVfioHost.create(root), 3).startsWith("no " + root.resolve("3")));
        assertTrue(cause(ScriptedVfioHost.create(root, 3).openFails(root.resolve("3").toString(), Errno.EACCES), 3)
                .startsWith("no permission to open " + root.resolve("3")));
        assertTrue(cause(ScriptedVfioHost.create(root, 3).on("VFIO_GROUP_GET_STATUS", (c, a) -> 0), 3)
                .startsWith("IOMMU group 3 is not viable"));
        assertTrue(cause(ScriptedVfioHost.create(root, 3).on("VFIO_CHECK_EXTENSION", (c, a) -> 0), 3)
                .contains("supports neither VFIO_TYPE1v2_IOMMU nor VFIO_TYPE1_IOMMU"));
        assertTrue(cause(ScriptedVfioHost.create(root, 3).openFails(root.resolve("3").toString(), Errno.EBUSY), 3)
                .contains("already open in another process"));
        String notContainer = cause(ScriptedVfioHost.create(root, 3).fail("VFIO_GET_API_VERSION", Errno.ENOTTY), 3);
        assertTrue(notContainer.contains("is not a VFIO container")
                && notContainer.contains("ioctl(VFIO_GET_API_VERSION) failed: ENOTTY (25)"), notContainer);
    }
}
