"""The batch partitions: one dynamic partition per landing folder, added by the sensor or `sslpipe run`."""

import dagster as dg

batches = dg.DynamicPartitionsDefinition(name="batches")


def earlier_batches(instance: dg.DagsterInstance, batch: str) -> list[str]:
    """Batches registered before `batch`, oldest first (registration order = arrival order)."""
    keys = list(instance.get_dynamic_partitions(batches.name))
    return keys[: keys.index(batch)] if batch in keys else keys
