package io.actovisor.demos.coherence;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.typesafe.config.Config;
import io.actovisor.kernel.vfio.Vfio;
import java.io.PrintStream;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * {@code ./actovisor vfio-edu-demo [--device BDF]}: runs {@link EduVfioScenario} on this host's real VFIO and prints
 * one JSON object per finding on stdout ({@code {"step":..,"holds":..,"details":{..}}}), then a summary line
 * ({@code {"summary":true,"findings":N,"failed":M}}). Exit status 0 when every finding holds, 1 when one does not,
 * 3 when VFIO or the device is missing (the summary then carries {@code "unavailable"}).
 */
public final class EduVfioDemo {
    private static final ObjectMapper JSON = new ObjectMapper();

    private EduVfioDemo() {
    }

    public static int run(Config config, String[] args, PrintStream out, PrintStream err) {
        Optional<String> device = Optional.empty();
        for (int i = 1; i < args.length; i++) {
            if (args[i].equals("--device") && i + 1 < args.length) {
                device = Optional.of(args[++i]);
            } else {
                err.println("actovisor vfio-edu-demo: unknown argument '" + args[i] + "'; usage: vfio-edu-demo "
                        + "[--device PCI-ADDRESS]");
                return 2;
            }
        }
        AtomicInteger findings = new AtomicInteger();
        AtomicInteger failed = new AtomicInteger();
        try {
            EduVfioScenario.run(config, Vfio.DEFAULT_SYSFS, device, finding -> {
                findings.incrementAndGet();
                if (!finding.holds()) {
                    failed.incrementAndGet();
                }
                Map<String, Object> line = new LinkedHashMap<>();
                line.put("step", finding.step());
                line.put("holds", finding.holds());
                line.put("details", finding.details());
                print(out, line);
            });
        } catch (IllegalStateException e) {
            print(out, Map.of("summary", true, "findings", findings.get(), "failed", failed.get(),
                    findings.get() == 0 ? "unavailable" : "error", String.valueOf(e.getMessage())));
            err.println("actovisor vfio-edu-demo: " + e.getMessage());
            return findings.get() == 0 ? 3 : 1;
        }
        print(out, Map.of("summary", true, "findings", findings.get(), "failed", failed.get()));
        return failed.get() == 0 ? 0 : 1;
    }

    private static void print(PrintStream out, Map<String, Object> line) {
        try {
            out.println(JSON.writeValueAsString(line));
            out.flush();
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("cannot write a finding as JSON", e);
        }
    }
}
