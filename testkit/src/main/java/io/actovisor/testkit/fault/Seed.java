package io.actovisor.testkit.fault;

import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.SplittableRandom;

/**
 * What makes a randomized scenario reproducible: the scenario's shape (its name and the parameters that fix which
 * choices it makes, e.g. {@code attach-detach/groups=3}) and a 64-bit value. Printed as {@code shape#hex}; a test
 * that fails prints its seed, and {@link #parse} of that text replays the same inputs and fault schedule.
 */
public record Seed(String shape, long value) {
    public Seed {
        Objects.requireNonNull(shape, "shape");
        if (shape.isEmpty() || shape.contains("#")) {
            throw new IllegalArgumentException("a scenario shape is a non-empty name without '#', not '" + shape
                    + "'");
        }
    }

    /** A fresh seed for {@code shape}. */
    public static Seed random(String shape) {
        return new Seed(shape, new SplittableRandom().nextLong());
    }

    /**
     * The seed {@code text} ({@code shape#hex}, as printed).
     *
     * @throws IllegalArgumentException naming the text when it is not a seed
     */
    public static Seed parse(String text) {
        int at = text.lastIndexOf('#');
        if (at <= 0) {
            throw new IllegalArgumentException("'" + text + "' is not a seed: expected shape#hex, as a failing test "
                    + "prints it");
        }
        try {
            return new Seed(text.substring(0, at), Long.parseUnsignedLong(text.substring(at + 1), 16));
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("'" + text + "' is not a seed: '" + text.substring(at + 1)
                    + "' is not a hexadecimal 64-bit value");
        }
    }

    /**
     * This seed, checked to be one of scenario shape {@code expected}.
     *
     * @throws IllegalArgumentException naming both shapes when this seed was made for another scenario
     */
    public Seed forShape(String expected) {
        if (!shape.equals(expected)) {
            throw new IllegalArgumentException("seed " + this + " is for a scenario of shape '" + shape
                    + "', but it was given to a scenario of shape '" + expected + "'");
        }
        return this;
    }

    /**
     * The seeds a randomized test of shape {@code shape} runs: the one in the system property {@code actovisor.seed}
     * (a seed as printed, {@code shape#hex}: it replays that run), otherwise {@code shape#1} to {@code shape#n} with
     * {@code n} from the system property {@code actovisor.seeds}, {@code defaultCount} without it.
     *
     * @throws IllegalArgumentException when {@code actovisor.seed} is not a seed of this shape (naming both)
     */
    public static List<Seed> selected(String shape, int defaultCount) {
        String one = System.getProperty("actovisor.seed");
        if (one != null) {
            return List.of(parse(one).forShape(shape));
        }
        int count = Integer.getInteger("actovisor.seeds", defaultCount);
        List<Seed> seeds = new ArrayList<>(count);
        for (long value = 1; value <= count; value++) {
            seeds.add(new Seed(shape, value));
        }
        return seeds;
    }

    /** The random source every choice of the scenario draws from, in order. */
    public SplittableRandom random() {
        return new SplittableRandom(value);
    }

    @Override
    public String toString() {
        return shape + "#" + Long.toHexString(value);
    }
}
