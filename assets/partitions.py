"""The batch partitions: one dynamic partition per landing folder, added by the sensor or `sslpipe run`."""

from pathlib import Path

import dagster as dg

from ssl_ops.locks import file_lock

batches = dg.DynamicPartitionsDefinition(name="batches")


def earlier_batches(instance: dg.DagsterInstance, batch: str) -> list[str]:
    """Batches registered before `batch`, oldest first (registration order = arrival order)."""
    keys = list(instance.get_dynamic_partitions(batches.name))
    return keys[: keys.index(batch)] if batch in keys else keys


def add_batches(instance: dg.DagsterInstance, names: list[str], lock: Path, tries: int = 5) -> list[str]:
    """Register the batches of `names` not yet known, in their order, idempotently; -> those this call added.

    Dagster's add_dynamic_partitions reads the known keys and then inserts the others; two processes doing
    that at once both insert, and the second fails on the table's unique key. Processes of this home take
    `lock` around the check-and-add; a writer that does not (the landing sensor, in the daemon) can still win
    in between, so a unique-key failure is met by reading the keys again and adding what is still missing.
    """
    from sqlalchemy.exc import IntegrityError

    with file_lock(lock, what="registering batch partitions"):
        for attempt in range(tries):
            known = set(instance.get_dynamic_partitions(batches.name))
            new = [b for b in names if b not in known]
            if not new:
                return []
            try:
                instance.add_dynamic_partitions(batches.name, new)
                return new
            except IntegrityError:
                if attempt == tries - 1:
                    raise
    return []
