package io.actovisor.it.emulated;

import io.actovisor.memory.testing.KvmHost;
import java.io.File;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Enumeration;
import java.util.List;
import java.util.function.Predicate;
import java.util.jar.JarEntry;
import java.util.jar.JarFile;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.Tag;

/**
 * The {@code kvm}-tagged test classes of this project on the class path, grouped by the module they come from (its
 * test jar, or its {@code target/test-classes} directory in a reactor build): one group is one boot of the emulated
 * KVM host. Only classes named like tests ({@code *Test}, {@code *Tests}) are looked at.
 */
final class KvmTestClasses {
    /** The system property that narrows the run to some classes: simple or full names, comma-separated. */
    static final String ONLY = "actovisor.kvm.classes";
    private static final Pattern TEST_JAR = Pattern.compile("actovisor-([a-z-]+)-\\d[^/]*-tests\\.jar");

    /** The classes of one module, run in one guest. */
    record Group(String module, List<String> classes) {
    }

    private KvmTestClasses() {
    }

    /** The groups on {@code classPath}, with the {@code kvm} classes whose names {@code wanted} accepts. */
    static List<Group> onClassPath(String classPath, ClassLoader loader, Predicate<String> wanted) {
        return onClassPath(classPath, loader, wanted, KvmHost.TAG);
    }

    /** The groups on {@code classPath}, with the classes tagged {@code tag} whose names {@code wanted} accepts. */
    static List<Group> onClassPath(String classPath, ClassLoader loader, Predicate<String> wanted, String tag) {
        List<Group> groups = new ArrayList<>();
        for (String entry : classPath.split(File.pathSeparator)) {
            Path root = Path.of(entry);
            String module = module(root);
            if (module == null) {
                continue;
            }
            List<String> classes = classNames(root).stream().filter(wanted)
                    .filter(name -> hasTag(name, loader, tag)).toList();
            if (!classes.isEmpty()) {
                groups.add(new Group(module, classes));
            }
        }
        return groups;
    }

    /** The module a class path entry holds the tests of, or null if it is not a test root of this project. */
    static String module(Path root) {
        String name = root.getFileName() == null ? "" : root.getFileName().toString();
        Matcher jar = TEST_JAR.matcher(name);
        if (jar.matches() && Files.isRegularFile(root)) {
            return jar.group(1);
        }
        if (name.equals("test-classes") && Files.isDirectory(root) && root.getParent() != null
                && root.getParent().getParent() != null
                && root.getParent().getFileName().toString().equals("target")) {
            return root.getParent().getParent().getFileName().toString();
        }
        return null;
    }

    /** Accepts the classes {@code list} names (simple or full names, comma-separated), or all when it is empty. */
    static Predicate<String> only(String list) {
        if (list == null || list.isBlank()) {
            return name -> true;
        }
        List<String> names = Arrays.stream(list.split(",")).map(String::trim).toList();
        return name -> names.contains(name) || names.contains(name.substring(name.lastIndexOf('.') + 1));
    }

    private static List<String> classNames(Path root) {
        List<String> names = new ArrayList<>();
        try {
            if (Files.isDirectory(root)) {
                try (Stream<Path> files = Files.walk(root)) {
                    files.map(f -> root.relativize(f).toString()).forEach(f -> addIfTest(f, names));
                }
            } else {
                try (JarFile jar = new JarFile(root.toFile())) {
                    for (Enumeration<JarEntry> e = jar.entries(); e.hasMoreElements(); ) {
                        addIfTest(e.nextElement().getName(), names);
                    }
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot list the test classes in " + root, e);
        }
        names.sort(String::compareTo);
        return names;
    }

    private static void addIfTest(String file, List<String> names) {
        if (file.endsWith("Test.class") || file.endsWith("Tests.class")) {
            String name = file.substring(0, file.length() - ".class".length()).replace(File.separatorChar, '.')
                    .replace('/', '.');
            if (!name.contains("$")) {
                names.add(name);
            }
        }
    }

    /** Whether the class {@code name} carries the JUnit tag {@code tag}. */
    static boolean hasTag(String name, ClassLoader loader, String tag) {
        try {
            Class<?> type = Class.forName(name, false, loader);
            return Arrays.stream(type.getAnnotationsByType(Tag.class)).anyMatch(t -> t.value().equals(tag));
        } catch (ClassNotFoundException | LinkageError e) {
            return false;
        }
    }
}
