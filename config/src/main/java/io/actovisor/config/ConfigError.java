package io.actovisor.config;

/**
 * One problem in a VM definition.
 *
 * @param path    the config path, e.g. {@code actovisor.vm.memory[1].size}
 * @param value   the offending value as written (or {@code null} when a key is missing)
 * @param message what is wrong and what would be right
 * @param file    the file (or description) the value comes from, {@code null} when unknown
 * @param line    its line, 0 when unknown
 */
public record ConfigError(String path, String value, String message, String file, int line) {
    /** An error whose place is not known (yet). */
    public ConfigError(String path, String value, String message) {
        this(path, value, message, null, 0);
    }

    /** This error at {@code file}, line {@code line}. */
    public ConfigError at(String file, int line) {
        return new ConfigError(path, value, message, file, line);
    }

    @Override
    public String toString() {
        String where = file == null ? "" : line > 0 ? file + ":" + line + ": " : file + ": ";
        return where + (value == null ? path + ": " + message : path + " = " + value + ": " + message);
    }
}
