package io.actovisor.kernel.uring;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.actovisor.kernel.testing.CProbe;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Every constant, size and offset in {@link IoUringAbi} against {@code <linux/io_uring.h>} through gcc. */
class IoUringAbiTest {
    @TempDir
    Path work;

    @Test
    void everyValueMatchesTheInstalledHeader() throws Exception {
        CProbe.require(Path.of("/usr/include/linux/io_uring.h"));
        Map<String, Long> kernel = CProbe.compileAndRun(IoUringAbiTest.class, "/uring/io_uring_abi_probe.c", work);
        assertEquals(kernel, CProbe.constantsOf(IoUringAbi.class),
                "IoUringAbi and the probe must list the same names with the same values");
    }
}
