package io.actovisor.devices.acpi;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.List;

/**
 * A small encoder of ACPI Machine Language (ACPI 6.5, chapter 20 "ACPI Machine Language Specification"): just the
 * terms a DSDT needs to describe fixed devices: {@code Scope}, {@code Device}, {@code Name}, integers, strings and
 * resource-template buffers (chapter 6.4) with 32-bit fixed memory ranges and extended interrupts. Each method
 * returns the encoded bytes of one term.
 */
public final class Aml {
    private static final int ZERO_OP = 0x00;
    private static final int ONE_OP = 0x01;
    private static final int NAME_OP = 0x08;
    private static final int BYTE_PREFIX = 0x0a;
    private static final int WORD_PREFIX = 0x0b;
    private static final int DWORD_PREFIX = 0x0c;
    private static final int STRING_PREFIX = 0x0d;
    private static final int QWORD_PREFIX = 0x0e;
    private static final int SCOPE_OP = 0x10;
    private static final int BUFFER_OP = 0x11;
    private static final int EXT_OP_PREFIX = 0x5b;
    private static final int DEVICE_OP = 0x82;
    private static final int ROOT_CHAR = 0x5c;
    private static final int DUAL_NAME_PREFIX = 0x2e;
    private static final int MULTI_NAME_PREFIX = 0x2f;

    // Resource descriptors (ACPI 6.5, 6.4.3.4 and 6.4.3.6).
    private static final int MEMORY32_FIXED = 0x86;
    /** Small item 0x08 (I/O port descriptor) with 7 data bytes. */
    private static final int IO_PORT = 0x47;
    private static final int EXTENDED_INTERRUPT = 0x89;
    private static final int END_TAG = 0x79;

    private Aml() {
    }

    /** {@code Scope(name) { terms }}. */
    public static byte[] scope(String name, List<byte[]> terms) {
        return concat(new byte[] {(byte) SCOPE_OP}, pkg(concat(nameString(name), concat(terms))));
    }

    /** {@code Device(name) { terms }}. */
    public static byte[] device(String name, List<byte[]> terms) {
        return concat(new byte[] {(byte) EXT_OP_PREFIX, (byte) DEVICE_OP}, pkg(concat(nameString(name),
                concat(terms))));
    }

    /** {@code Name(name, object)} where {@code object} is an encoded data object. */
    public static byte[] name(String name, byte[] object) {
        return concat(new byte[] {(byte) NAME_OP}, concat(nameString(name), object));
    }

    /** An integer constant in its shortest encoding (ZeroOp, OneOp, Byte/Word/DWord/QWordConst). */
    public static byte[] integer(long value) {
        if (value == 0) {
            return new byte[] {ZERO_OP};
        }
        if (value == 1) {
            return new byte[] {ONE_OP};
        }
        int width;
        int prefix;
        if ((value & ~0xffL) == 0) {
            width = 1;
            prefix = BYTE_PREFIX;
        } else if ((value & ~0xffffL) == 0) {
            width = 2;
            prefix = WORD_PREFIX;
        } else if ((value & ~0xffff_ffffL) == 0) {
            width = 4;
            prefix = DWORD_PREFIX;
        } else {
            width = 8;
            prefix = QWORD_PREFIX;
        }
        byte[] out = new byte[1 + width];
        out[0] = (byte) prefix;
        for (int i = 0; i < width; i++) {
            out[1 + i] = (byte) (value >>> (8 * i));
        }
        return out;
    }

    /** A string constant: ASCII characters 0x01-0x7f, NUL-terminated. */
    public static byte[] string(String value) {
        for (char ch : value.toCharArray()) {
            if (ch == 0 || ch > 0x7f) {
                throw new IllegalArgumentException("an AML string holds ASCII 0x01-0x7f only: '" + value + "'");
            }
        }
        byte[] ascii = value.getBytes(StandardCharsets.US_ASCII);
        byte[] out = new byte[ascii.length + 2];
        out[0] = STRING_PREFIX;
        System.arraycopy(ascii, 0, out, 1, ascii.length);
        return out;
    }

    /** {@code Buffer() { bytes }}: a buffer whose size is its initializer's length. */
    public static byte[] buffer(byte[] bytes) {
        return concat(new byte[] {(byte) BUFFER_OP}, pkg(concat(integer(bytes.length), bytes)));
    }

    /** {@code ResourceTemplate() { descriptors }}: the descriptors followed by an end tag, as a buffer. */
    public static byte[] resourceTemplate(List<byte[]> descriptors) {
        // A zero checksum in the end tag means "treat as valid" (ACPI 6.5, 6.4.2.9).
        return buffer(concat(concat(descriptors), new byte[] {(byte) END_TAG, 0}));
    }

    /** {@code Memory32Fixed(ReadWrite or ReadOnly, base, length)}: a large resource of 9 data bytes. */
    public static byte[] memory32Fixed(boolean writable, long base, long length) {
        checkU32("base", base);
        checkU32("length", length);
        byte[] out = new byte[12];
        out[0] = (byte) MEMORY32_FIXED;
        out[1] = 9;
        out[2] = 0;
        out[3] = (byte) (writable ? 1 : 0);
        putU32(out, 4, base);
        putU32(out, 8, length);
        return out;
    }

    /**
     * {@code IO(Decode16, base, base, 1, length)}: a small I/O port descriptor (ACPI 6.5, 6.4.2.5) for a fixed range
     * of {@code length} ports from {@code base}, which decodes all 16 address bits.
     */
    public static byte[] io(int base, int length) {
        if (base < 0 || base > 0xffff || length < 1 || length > 0xff || base + length > 0x10000) {
            throw new IllegalArgumentException("an I/O descriptor covers ports 0-0xffff with 1-255 ports, not 0x"
                    + Integer.toHexString(base) + " + " + length);
        }
        return new byte[] {(byte) IO_PORT, 1, (byte) base, (byte) (base >> 8), (byte) base, (byte) (base >> 8), 1,
            (byte) length};
    }

    /**
     * {@code Interrupt(ResourceConsumer, Level|Edge, ActiveHigh|ActiveLow, Exclusive|Shared) { gsi }}: an extended
     * interrupt descriptor with one interrupt and no resource source.
     */
    public static byte[] interrupt(long gsi, boolean edge, boolean activeLow, boolean shared) {
        checkU32("interrupt", gsi);
        byte[] out = new byte[9];
        out[0] = (byte) EXTENDED_INTERRUPT;
        out[1] = 6;
        out[2] = 0;
        out[3] = (byte) (1 | (edge ? 2 : 0) | (activeLow ? 4 : 0) | (shared ? 8 : 0));
        out[4] = 1;
        putU32(out, 5, gsi);
        return out;
    }

    /**
     * A NameString: an optional root prefix ({@code \}) then one or more segments separated by dots, each of one
     * to four characters (upper-case letters, digits, underscore; not starting with a digit), padded with '_'.
     */
    public static byte[] nameString(String path) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        String rest = path;
        if (rest.startsWith("\\")) {
            out.write(ROOT_CHAR);
            rest = rest.substring(1);
        }
        String[] segments = rest.split("\\.");
        if (segments.length == 2) {
            out.write(DUAL_NAME_PREFIX);
        } else if (segments.length > 2) {
            out.write(MULTI_NAME_PREFIX);
            out.write(segments.length);
        }
        for (String segment : segments) {
            out.writeBytes(nameSeg(segment));
        }
        return out.toByteArray();
    }

    private static byte[] nameSeg(String segment) {
        if (segment.isEmpty() || segment.length() > 4 || !segment.matches("[A-Z_][A-Z0-9_]*")) {
            throw new IllegalArgumentException("'" + segment + "' is not an AML name segment (1-4 of A-Z, 0-9, _, "
                    + "not starting with a digit)");
        }
        StringBuilder padded = new StringBuilder(segment);
        while (padded.length() < 4) {
            padded.append('_');
        }
        return padded.toString().getBytes(StandardCharsets.US_ASCII);
    }

    /**
     * {@code body} preceded by its PkgLength (ACPI 6.5, 20.2.4): the length counts the PkgLength bytes themselves;
     * one byte holds up to 63, otherwise the lead byte's top two bits say how many bytes follow (1-3), its low
     * nibble holds the least significant four bits and each following byte the next eight.
     */
    static byte[] pkg(byte[] body) {
        int n = body.length;
        byte[] length;
        if (n + 1 <= 0x3f) {
            length = new byte[] {(byte) (n + 1)};
        } else if (n + 2 < 1 << 12) {
            int v = n + 2;
            length = new byte[] {(byte) (0x40 | (v & 0xf)), (byte) (v >> 4)};
        } else if (n + 3 < 1 << 20) {
            int v = n + 3;
            length = new byte[] {(byte) (0x80 | (v & 0xf)), (byte) (v >> 4), (byte) (v >> 12)};
        } else if (n + 4 < 1 << 28) {
            int v = n + 4;
            length = new byte[] {(byte) (0xc0 | (v & 0xf)), (byte) (v >> 4), (byte) (v >> 12), (byte) (v >> 20)};
        } else {
            throw new IllegalArgumentException("an AML package of " + n + " bytes exceeds PkgLength's 2^28");
        }
        return concat(length, body);
    }

    private static void checkU32(String what, long value) {
        if ((value & ~0xffff_ffffL) != 0) {
            throw new IllegalArgumentException(what + " 0x" + Long.toHexString(value) + " does not fit 32 bits");
        }
    }

    private static void putU32(byte[] out, int at, long value) {
        for (int i = 0; i < 4; i++) {
            out[at + i] = (byte) (value >>> (8 * i));
        }
    }

    static byte[] concat(byte[] a, byte[] b) {
        byte[] out = new byte[a.length + b.length];
        System.arraycopy(a, 0, out, 0, a.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }

    static byte[] concat(List<byte[]> parts) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        parts.forEach(out::writeBytes);
        return out.toByteArray();
    }
}
