package io.actovisor.memory;

import java.util.AbstractList;
import java.util.ArrayDeque;
import java.util.Iterator;
import java.util.NoSuchElementException;

/**
 * A persistent treap from unsigned 64-bit keys to values: every update copies the path it changes and returns a
 * new root, so an older root stays a valid, unchanged map. The priority of a node is a hash of its key, so the
 * shape depends only on the set of keys (expected depth O(log n) for any key order, sequential addresses too).
 * {@code null} is the empty tree. Used by {@link FlatView} (sections by base address) and {@link FlatViewEditor}
 * (regions by insertion number) so that a commit of k changes copies O(k log n) nodes, not the whole view.
 */
final class FlatViewTree<V> {
    final long key;
    final V value;
    final FlatViewTree<V> left;
    final FlatViewTree<V> right;
    final int size;
    private final int priority;

    private FlatViewTree(long key, V value, int priority, FlatViewTree<V> left, FlatViewTree<V> right) {
        this.key = key;
        this.value = value;
        this.priority = priority;
        this.left = left;
        this.right = right;
        this.size = 1 + size(left) + size(right);
    }

    static <V> FlatViewTree<V> leaf(long key, V value) {
        return new FlatViewTree<>(key, value, hash(key), null, null);
    }

    private static int hash(long key) { // SplitMix64's finalizer: neighbouring keys get unrelated priorities
        long z = key + 0x9E3779B97F4A7C15L;
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return (int) (z ^ (z >>> 31));
    }

    private FlatViewTree<V> with(FlatViewTree<V> newLeft, FlatViewTree<V> newRight) {
        return newLeft == left && newRight == right ? this : new FlatViewTree<>(key, value, priority, newLeft,
                newRight);
    }

    static int size(FlatViewTree<?> t) {
        return t == null ? 0 : t.size;
    }

    /** {@code [keys < key, keys >= key]} of {@code t}. */
    static <V> FlatViewTree<V>[] split(FlatViewTree<V> t, long key) {
        @SuppressWarnings("unchecked")
        FlatViewTree<V>[] out = new FlatViewTree[2];
        if (t == null) {
            return out;
        }
        if (Long.compareUnsigned(t.key, key) < 0) {
            FlatViewTree<V>[] p = split(t.right, key);
            out[0] = t.with(t.left, p[0]);
            out[1] = p[1];
        } else {
            FlatViewTree<V>[] p = split(t.left, key);
            out[0] = p[0];
            out[1] = t.with(p[1], t.right);
        }
        return out;
    }

    /** The union of {@code l} and {@code r}, where every key of {@code l} is below every key of {@code r}. */
    static <V> FlatViewTree<V> merge(FlatViewTree<V> l, FlatViewTree<V> r) {
        if (l == null) {
            return r;
        }
        if (r == null) {
            return l;
        }
        if (l.priority >= r.priority) {
            return l.with(l.left, merge(l.right, r));
        }
        return r.with(merge(l, r.left), r.right);
    }

    /** {@code t} with {@code key} mapped to {@code value} (replacing an existing mapping). */
    static <V> FlatViewTree<V> put(FlatViewTree<V> t, long key, V value) {
        FlatViewTree<V>[] lr = split(t, key);
        FlatViewTree<V> rest = lr[1];
        if (rest != null && min(rest).key == key) {
            rest = remove(rest, key);
        }
        return merge(merge(lr[0], leaf(key, value)), rest);
    }

    /** {@code t} without {@code key}. */
    static <V> FlatViewTree<V> remove(FlatViewTree<V> t, long key) {
        if (t == null) {
            return null;
        }
        int c = Long.compareUnsigned(key, t.key);
        if (c == 0) {
            return merge(t.left, t.right);
        }
        return c < 0 ? t.with(remove(t.left, key), t.right) : t.with(t.left, remove(t.right, key));
    }

    static <V> FlatViewTree<V> min(FlatViewTree<V> t) {
        if (t == null) {
            return null;
        }
        while (t.left != null) {
            t = t.left;
        }
        return t;
    }

    static <V> FlatViewTree<V> max(FlatViewTree<V> t) {
        if (t == null) {
            return null;
        }
        while (t.right != null) {
            t = t.right;
        }
        return t;
    }

    /** The node with the greatest key {@code <= key}, or null. */
    static <V> FlatViewTree<V> floor(FlatViewTree<V> t, long key) {
        FlatViewTree<V> best = null;
        while (t != null) {
            if (Long.compareUnsigned(t.key, key) <= 0) {
                best = t;
                t = t.right;
            } else {
                t = t.left;
            }
        }
        return best;
    }

    /** The value at in-order position {@code index}. */
    static <V> V get(FlatViewTree<V> t, int index) {
        if (index < 0 || index >= size(t)) {
            throw new IndexOutOfBoundsException("index " + index + " of " + size(t));
        }
        while (true) {
            int l = size(t.left);
            if (index < l) {
                t = t.left;
            } else if (index == l) {
                return t.value;
            } else {
                index -= l + 1;
                t = t.right;
            }
        }
    }

    /** The values of {@code t} in key order, as a read-only list that shares the tree (O(log n) per get). */
    static <V> java.util.List<V> values(FlatViewTree<V> t) {
        return new AbstractList<>() {
            @Override
            public V get(int index) {
                return FlatViewTree.get(t, index);
            }

            @Override
            public int size() {
                return FlatViewTree.size(t);
            }

            @Override
            public Iterator<V> iterator() {
                return FlatViewTree.iterator(t);
            }
        };
    }

    static <V> Iterator<V> iterator(FlatViewTree<V> root) {
        return new Iterator<>() {
            private final ArrayDeque<FlatViewTree<V>> stack = new ArrayDeque<>();

            {
                descend(root);
            }

            private void descend(FlatViewTree<V> t) {
                for (; t != null; t = t.left) {
                    stack.push(t);
                }
            }

            @Override
            public boolean hasNext() {
                return !stack.isEmpty();
            }

            @Override
            public V next() {
                if (stack.isEmpty()) {
                    throw new NoSuchElementException();
                }
                FlatViewTree<V> t = stack.pop();
                descend(t.right);
                return t.value;
            }
        };
    }
}
