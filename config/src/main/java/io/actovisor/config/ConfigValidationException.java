package io.actovisor.config;

import java.util.List;
import java.util.stream.Collectors;

/** A VM definition with problems; {@link #errors()} lists every one, in the order they appear. */
public final class ConfigValidationException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    private final transient List<ConfigError> errors;

    public ConfigValidationException(List<ConfigError> errors) {
        super(errors.size() + (errors.size() == 1 ? " error" : " errors") + " in the VM definition:\n"
                + errors.stream().map(e -> "  " + e).collect(Collectors.joining("\n")));
        this.errors = List.copyOf(errors);
    }

    public List<ConfigError> errors() {
        return errors;
    }
}
