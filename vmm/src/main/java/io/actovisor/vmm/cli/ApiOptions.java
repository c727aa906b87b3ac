package io.actovisor.vmm.cli;

import io.actovisor.vmm.api.ApiAccess;
import java.nio.file.Path;
import java.util.Map;
import java.util.Optional;
import picocli.CommandLine.Option;

/**
 * How a client command finds its VMM: {@code --api URL} (or {@code ACTOVISOR_API}) with {@code --token} (or
 * {@code ACTOVISOR_TOKEN}); otherwise the access file that {@code run} wrote, by {@code --vm NAME} or the only one.
 */
public final class ApiOptions {
    @Option(names = "--api", paramLabel = "URL", description = "the API's base URL (default: ACTOVISOR_API, else "
            + "the access file of the running VM)")
    String api;

    @Option(names = "--token", paramLabel = "T", description = "the bearer token (default: ACTOVISOR_TOKEN, else "
            + "the access file's)")
    String token;

    @Option(names = "--vm", paramLabel = "NAME", description = "the running VM to talk to, when several run")
    String vm;

    ApiClient client() {
        return client(System.getenv());
    }

    ApiClient client(Map<String, String> env) {
        Path dir = ApiAccess.directory(env);
        Optional<String> url = Optional.ofNullable(api).or(() -> Optional.ofNullable(env.get("ACTOVISOR_API")))
                .filter(u -> !u.isBlank());
        Optional<String> bearer = Optional.ofNullable(token).or(() -> Optional.ofNullable(env.get("ACTOVISOR_TOKEN")));
        if (url.isEmpty() || (bearer.isEmpty() && vm != null)) {
            ApiAccess access = ApiAccess.find(dir, Optional.ofNullable(vm));
            return new ApiClient(url.orElse(access.url()), bearer.or(() -> Optional.of(access.token())));
        }
        if (bearer.isEmpty()) {
            // An explicit URL: take the token of the access file that names it, if one does.
            bearer = ApiAccess.all(dir).stream().filter(a -> sameUrl(a.url(), url.get())).map(ApiAccess::token)
                    .findFirst();
        }
        return new ApiClient(url.get(), bearer);
    }

    private static boolean sameUrl(String a, String b) {
        return strip(a).equals(strip(b));
    }

    private static String strip(String url) {
        return url.endsWith("/") ? url.substring(0, url.length() - 1) : url;
    }
}
