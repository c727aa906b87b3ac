package io.actovisor.vmm.cli;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.Optional;

/** The CLI's side of the REST API: one request, the status and the body. */
public final class ApiClient {
    private final URI base;
    private final Optional<String> token;
    private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();

    /** A response: HTTP status and body text. */
    public record Reply(int status, String body) {
        public boolean ok() {
            return status >= 200 && status < 300;
        }
    }

    public ApiClient(String baseUrl, Optional<String> token) {
        String url = baseUrl.endsWith("/") ? baseUrl.substring(0, baseUrl.length() - 1) : baseUrl;
        try {
            this.base = URI.create(url);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("--api: not a URL: '" + baseUrl + "'");
        }
        if (base.getScheme() == null || !base.getScheme().startsWith("http")) {
            throw new IllegalArgumentException("--api: expected an http:// URL, was '" + baseUrl + "'");
        }
        this.token = token;
    }

    /** The API's base URL. */
    public URI base() {
        return base;
    }

    public Reply send(String method, String path, String jsonBody) throws IOException, InterruptedException {
        HttpRequest.Builder request = HttpRequest.newBuilder(URI.create(base + path))
                .timeout(Duration.ofSeconds(30))
                .method(method, jsonBody == null ? HttpRequest.BodyPublishers.noBody()
                        : HttpRequest.BodyPublishers.ofString(jsonBody));
        if (jsonBody != null) {
            request.header("Content-Type", "application/json");
        }
        token.ifPresent(t -> request.header("Authorization", "Bearer " + t));
        HttpResponse<String> response = http.send(request.build(), HttpResponse.BodyHandlers.ofString());
        return new Reply(response.statusCode(), response.body());
    }
}
