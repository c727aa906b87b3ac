package io.actovisor.vmm.api;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.actovisor.vmm.api.VmManagement.Action;
import java.util.Arrays;
import java.util.Iterator;
import java.util.Set;

/** Strict parsing of request bodies: every refusal names the field and the value. */
final class RequestBodies {
    private static final ObjectMapper JSON = new ObjectMapper();
    /** Larger than any guest this VMM can hold (2^40 MiB = 1 EiB); beyond it the value is refused as huge. */
    static final long MAX_MIB = 1L << 40;

    private RequestBodies() {
    }

    static JsonNode object(String body) {
        JsonNode node;
        try {
            node = JSON.readTree(body);
        } catch (JsonProcessingException e) {
            throw ApiException.badRequest("malformed JSON body: " + e.getOriginalMessage());
        }
        if (node == null || !node.isObject()) {
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

    static Action action(String body) {
        JsonNode node = object(body);
        onlyFields(node, Set.of("action_type"));
        JsonNode type = node.get("action_type");
        if (type == null) {
            throw ApiException.badRequest("missing field 'action_type'; one of " + Arrays.toString(Action.values()));
        }
        if (!type.isTextual()) {
            throw ApiException.badRequest("field 'action_type' must be a string, was " + type);
        }
        for (Action a : Action.values()) {
            if (a.name().equals(type.asText())) {
                return a;
            }
        }
        throw ApiException.badRequest("field 'action_type' has invalid value " + type + "; one of "
                + Arrays.toString(Action.values()));
    }

    static long amountMib(String body) {
        JsonNode node = object(body);
        onlyFields(node, Set.of("amount_mib"));
        JsonNode amount = node.get("amount_mib");
        if (amount == null) {
            throw ApiException.badRequest("missing field 'amount_mib'");
        }
        if (!amount.isIntegralNumber()) {
            throw ApiException.badRequest("field 'amount_mib' must be a whole number of MiB, was " + amount);
        }
        if (!amount.canConvertToLong() || amount.asLong() > MAX_MIB) {
            throw ApiException.badRequest("field 'amount_mib' value " + amount + " is too large");
        }
        if (amount.asLong() < 0) {
            throw ApiException.badRequest("field 'amount_mib' must not be negative, was " + amount);
        }
        return amount.asLong();
    }

    private static String abbreviate(String s) {
        return s.length() > 80 ? s.substring(0, 80) + "..." : s;
    }
}
