/**
 * The REST API's resources, one record per resource, serialized by Jackson with snake_case names (Firecracker's
 * where the concept exists). The server, the CLI client and the tests share them.
 */
package io.actovisor.vmm.api.model;
