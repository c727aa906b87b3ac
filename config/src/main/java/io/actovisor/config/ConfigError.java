package io.actovisor.config;

/**
 * One problem in a VM definition.
 *
 * @param path    the config path, e.g. {@code actovisor.vm.memory[1].size}
 * @param value   the offending value as written (or {@code null} when a key is missing)
 * @param message what is wrong and what would be right
 */
public record ConfigError(String path, String value, String message) {
    @Override
    public String toString() {
        return value == null ? path + ": " + message : path + " = " + value + ": " + message;
    }
}
