package io.actovisor.config;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigException;
import com.typesafe.config.ConfigList;
import com.typesafe.config.ConfigObject;
import com.typesafe.config.ConfigOrigin;
import com.typesafe.config.ConfigRenderOptions;
import com.typesafe.config.ConfigValue;
import com.typesafe.config.ConfigValueFactory;
import com.typesafe.config.ConfigValueType;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** How the parser reports: every error at the file and line of its value, sorted by line, secrets redacted. */
final class ConfigErrors {
    /** Shown instead of a secret's value. */
    static final String REDACTED = "<redacted>";
    private static final Pattern SEGMENT = Pattern.compile("\"((?:[^\"\\\\]|\\\\.)*)\"|([^.\\[\\]\"]+)|\\[(\\d+)]");

    private ConfigErrors() {
    }

    /** Whether the value at {@code path} is a secret that errors and output must not show. */
    static boolean isSecret(String path) {
        return path.endsWith(".token") || path.endsWith(".password") || path.endsWith(".secret");
    }

    /** {@code value} as written, cut after 200 characters so that a huge value does not flood the report. */
    static String abbreviate(String value) {
        return value == null || value.length() <= 200 ? value
                : value.substring(0, 200) + "... (" + value.length() + " characters)";
    }

    /** A HOCON library failure as an error at its origin's file and line (line 1 when it has none). */
    static ConfigError fromLibrary(ConfigException e, String path) {
        ConfigError error = new ConfigError(path, null, describe(e));
        ConfigOrigin origin = e.origin();
        if (origin == null) {
            return error;
        }
        return error.at(origin.filename() != null ? origin.filename() : origin.description()
                .replaceAll(" @ .*|: \\d+(-\\d+)?$", ""), Math.max(1, origin.lineNumber()));
    }

    /** {@code value} as the user wrote it: unquoted strings without added quotes, numbers in their original text, secrets of
     * objects redacted. */
    static String asWritten(ConfigValue value) {
        if (!resolved(value)) {
            // Checked before resolve(): a value with a ${X} in it has no type yet, only its text.
            return value.render(ConfigRenderOptions.concise());
        }
        if (value.valueType() == ConfigValueType.STRING && value.getClass().getName().endsWith("$Unquoted")) {
            // HOCON keeps a too-large number such as 99999999999999999999 as an unquoted string: show it bare.
            return String.valueOf(value.unwrapped());
        }
        return redacted(value).render(ConfigRenderOptions.concise());
    }

    /**
     * Whether a value (read before {@code resolve()}) has a type: a substitution or a concatenation with one does
     * not.
     */
    private static boolean resolved(ConfigValue value) {
        try {
            value.valueType();
            return true;
        } catch (ConfigException.NotResolved e) {
            return false;
        }
    }

    private static ConfigValue redacted(ConfigValue value) {
        if (value instanceof ConfigObject object) {
            ConfigObject out = object;
            for (java.util.Map.Entry<String, ConfigValue> e : object.entrySet()) {
                out = out.withValue(e.getKey(), isSecret("." + e.getKey())
                        ? ConfigValueFactory.fromAnyRef(REDACTED) : redacted(e.getValue()));
            }
            return out;
        }
        if (value instanceof ConfigList list) {
            List<ConfigValue> out = new ArrayList<>();
            list.forEach(v -> out.add(redacted(v)));
            return ConfigValueFactory.fromIterable(out);
        }
        return value;
    }

    /** A HOCON library failure as a sentence: its message without the origin prefix or any class name. */
    static String describe(ConfigException e) {
        String message = String.valueOf(e.getMessage());
        ConfigOrigin origin = e.origin();
        if (origin != null && message.startsWith(origin.description() + ": ")) {
            message = message.substring(origin.description().length() + 2);
        }
        return message.replaceAll("\\b(?:[a-z]\\w*\\.)+[A-Z]\\w*(?:\\$\\w+)*", "a value").trim();
    }

    /**
     * {@code errors} each placed at the file and line where {@code user} wrote its path, or the nearest enclosing
     * object that it wrote (a missing key is placed at its parent); sorted by line, stable for equal lines.
     */
    static List<ConfigError> placed(List<ConfigError> errors, Config user) {
        List<ConfigError> out = new ArrayList<>();
        for (ConfigError e : errors) {
            if (e.line() > 0) {
                out.add(e);
                continue;
            }
            ConfigOrigin origin = originOf(user.root(), e.path());
            String file = origin == null ? null : origin.filename() != null ? origin.filename()
                    : origin.description().replaceAll(" @ .*|: \\d+(-\\d+)?$", "");
            int line = origin == null || origin.lineNumber() < 1 ? 1 : origin.lineNumber();
            out.add(e.at(file == null ? "the VM definition" : file, line));
        }
        out.sort(Comparator.comparingInt(ConfigError::line));
        return out;
    }

    /** The origin of the deepest value on {@code path} (e.g. {@code actovisor.vm.memory[1].size}) that exists. */
    static ConfigOrigin originOf(ConfigObject root, String path) {
        ConfigValue current = root;
        ConfigOrigin found = root.origin();
        Matcher m = SEGMENT.matcher(path);
        while (m.find() && current != null) {
            ConfigValue next = null;
            if (m.group(3) != null) {
                if (current instanceof ConfigList list) {
                    int i = Integer.parseInt(m.group(3));
                    next = i < list.size() ? list.get(i) : null;
                }
            } else if (current instanceof ConfigObject object) {
                String key = m.group(1) != null ? m.group(1) : m.group(2);
                next = object.get(key);
            }
            if (next == null) {
                break;
            }
            current = next;
            if (next.origin() != null && next.origin().lineNumber() > 0) {
                found = next.origin();
            }
        }
        return found;
    }
}
