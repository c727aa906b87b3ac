package io.actovisor.devices.guest.scripted;

/** A scripted guest's driver could not do what its program asked; the message says what and why. */
public final class ScriptedGuestException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public ScriptedGuestException(String message) {
        super(message);
    }

    public ScriptedGuestException(String message, Throwable cause) {
        super(message, cause);
    }
}
