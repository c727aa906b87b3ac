package io.actovisor.vmm.api.model;

/**
 * Every error answer: what was wrong, naming the field or object.
 *
 * @param faultMessage the message
 */
public record Fault(String faultMessage) {
}
