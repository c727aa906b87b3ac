package io.actovisor.vmm.api;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.exc.MismatchedInputException;
import io.actovisor.vmm.api.model.Action;
import io.actovisor.vmm.api.model.BalloonStatsUpdate;
import io.actovisor.vmm.api.model.BalloonUpdate;
import io.actovisor.vmm.api.model.VmStateUpdate;
import java.util.Arrays;
import java.util.Iterator;
import java.util.Set;

/**
 * Strict parsing of request bodies into the API's records: one JSON object, no trailing tokens, no duplicate keys,
 * no unknown fields; every refusal names the field and the value.
 */
final class RequestBodies {
    private static final ObjectMapper JSON = new ObjectMapper()
            .enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION)
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS);
    /** Larger than any guest this VMM can hold (2^40 MiB = 1 EiB); beyond it the value is refused as huge. */
    static final long MAX_MIB = 1L << 40;
    /** One day: longer intervals are refused. */
    static final long MAX_STATS_INTERVAL_S = 86_400;

    private RequestBodies() {
    }

    static JsonNode object(String body) {
        JsonNode node;
        try {
            node = JSON.readTree(body);
        } catch (MismatchedInputException e) {
            throw ApiException.badRequest("malformed JSON body: " + e.getOriginalMessage()
                    .replaceAll(" \\(for Object starting at.*", ""));
        } catch (JsonProcessingException e) {
            throw ApiException.badRequest("malformed JSON body: " + e.getOriginalMessage());
        }
        if (node == null || node.isMissingNode()) {
            throw ApiException.badRequest("the body must be a JSON object, was empty");
        }
        if (!node.isObject()) {
            throw ApiException.badRequest("the body must be a JSON object, was: " + abbreviate(body));
        }
        return node;
    }

    private static void onlyFields(JsonNode node, Set<String> allowed) {
        for (Iterator<String> it = node.fieldNames(); it.hasNext(); ) {
            String field = it.next();
            if (!allowed.contains(field)) {
                throw ApiException.badRequest("unknown field '" + field + "'; valid fields: " + allowed);
            }
        }
    }

    private static String text(JsonNode node, String field, String choices) {
        JsonNode value = node.get(field);
        if (value == null) {
            throw ApiException.badRequest("missing field '" + field + "'; one of " + choices);
        }
        if (!value.isTextual()) {
            throw ApiException.badRequest("field '" + field + "' must be a string, was " + value);
        }
        return value.asText();
    }

    private static long wholeNumber(JsonNode node, String field, String unit, long max) {
        JsonNode value = node.get(field);
        if (value == null) {
            throw ApiException.badRequest("missing field '" + field + "'");
        }
        if (!value.isIntegralNumber()) {
            throw ApiException.badRequest("field '" + field + "' must be a whole number of " + unit + ", was "
                    + value);
        }
        if (!value.canConvertToLong() || value.asLong() > max) {
            throw ApiException.badRequest("field '" + field + "' value " + value + " is too large");
        }
        if (value.asLong() < 0) {
            throw ApiException.badRequest("field '" + field + "' must not be negative, was " + value);
        }
        return value.asLong();
    }

    static Action action(String body) {
        JsonNode node = object(body);
        onlyFields(node, Set.of("action_type"));
        String type = text(node, "action_type", Arrays.toString(Action.Type.values()));
        switch (type) {
            case "Pause" -> throw ApiException.badRequest("action_type 'Pause' is gone: pause with PATCH /vm "
                    + "{\"state\": \"Paused\"}");
            case "Resume" -> throw ApiException.badRequest("action_type 'Resume' is gone: resume with PATCH /vm "
                    + "{\"state\": \"Resumed\"}");
            default -> {
            }
        }
        for (Action.Type a : Action.Type.values()) {
            if (a.name().equals(type)) {
                return new Action(a);
            }
        }
        throw ApiException.badRequest("field 'action_type' has invalid value \"" + type + "\"; one of "
                + Arrays.toString(Action.Type.values()));
    }

    static VmStateUpdate vmState(String body) {
        JsonNode node = object(body);
        onlyFields(node, Set.of("state"));
        String state = text(node, "state", Arrays.toString(VmStateUpdate.State.values()));
        for (VmStateUpdate.State s : VmStateUpdate.State.values()) {
            if (s.name().equals(state)) {
                return new VmStateUpdate(s);
            }
        }
        throw ApiException.badRequest("field 'state' has invalid value \"" + state + "\"; one of "
                + Arrays.toString(VmStateUpdate.State.values()));
    }

    static BalloonUpdate balloonUpdate(String body) {
        JsonNode node = object(body);
        onlyFields(node, Set.of("amount_mib"));
        return new BalloonUpdate(wholeNumber(node, "amount_mib", "MiB", MAX_MIB));
    }

    static BalloonStatsUpdate statsUpdate(String body) {
        JsonNode node = object(body);
        onlyFields(node, Set.of("stats_polling_interval_s"));
        long seconds = wholeNumber(node, "stats_polling_interval_s", "seconds", MAX_STATS_INTERVAL_S);
        if (seconds == 0) {
            throw ApiException.badRequest("field 'stats_polling_interval_s' must be at least 1, was 0 (statistics "
                    + "cannot be turned off while the VM runs)");
        }
        return new BalloonStatsUpdate(seconds);
    }

    private static String abbreviate(String s) {
        return s.length() > 80 ? s.substring(0, 80) + "..." : s;
    }
}
