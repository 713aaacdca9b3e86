"""eval_images:leakage: no eval image in any training shard (sha256, or pHash within the contract's distance).

A check of its own, not part of the eval_images materialization, so that it runs after the shards are final:
`sslpipe run` runs it last, and in the UI it is the `check_eval_leakage` job or the check's own button.

It relies on the shard indexes (which samples were left out) and on the shards themselves, so it verifies
them first: each index's digest and counts, each shard's size and sha256, and it takes the samples from the
shards' own member names (a manifest row is compared only when its sample is really in a shard). A damaged
index or shard, or a shard holding a sample its manifest lacks, fails the check naming it and the command
that rebuilds it: a leak could hide there.
"""

import json
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from assets.checks import check_result
from assets.partitions import batches
from assets.resources import PipelineHome
from data_contracts import Contract
from ssl_ops.escape import terminal
from ssl_ops.evalset import eval_digest
from ssl_ops.home import EVAL_BATCH
from ssl_ops.leakage import empty_train_table, find_leaks
from ssl_ops.manifest import read_manifest
from ssl_ops.shards.verify import shard_sample_ids, verify_batch


def sharded_samples(home: PipelineHome, instance: dg.DagsterInstance) -> tuple[pa.Table, list[str], list[str]]:
    """The samples in training shards now: the manifest rows of the sample ids each sharded batch's (verified)
    shards hold. -> (table, batches, damaged: 'path: what; rebuild with: command')."""
    h = home.paths()
    tables, names, damaged = [], [], []
    for b in instance.get_dynamic_partitions(batches.name):
        if not h.shard_index_path(b).is_file():
            continue
        check = verify_batch(h.shard_dir(b), batch=b, home=h.root)
        if not check.ok:
            damaged.append(check.describe())
            continue
        if not h.accepted_path(b).is_file():
            damaged.append(f"{h.accepted_path(b)}: missing, but batch {b!r} has shards")
            continue
        ids = set().union(*(shard_sample_ids(Path(s["path"])) for s in check.shards)) if check.shards else set()
        t = read_manifest(h.accepted_path(b), ["sample_id", "batch", "path", "phash", "contrast"])
        t = t.filter(pc.is_in(t.column("sample_id"), value_set=pa.array(sorted(ids), pa.string())))
        if t.num_rows != len(ids):
            damaged.append(f"{h.shard_dir(b)}: its shards hold {len(ids) - t.num_rows} sample(s) that its manifest "
                           f"lacks (cannot be checked for leakage). Rebuild with: {check.rebuild}")
        tables.append(t)
        names.append(b)
    return (pa.concat_tables(tables) if tables else empty_train_table()), names, damaged


def build_eval_leakage(contract: Contract) -> dg.AssetChecksDefinition:
    bits = contract.leakage_bits if contract.leakage_bits is not None else 4

    @dg.asset_check(asset="eval_images", name="leakage", blocking=contract.blocking("leakage"),
                    description=f"No eval image is in a training shard, by sha256 or within {bits} pHash bits "
                                f"({contract.checks.get('leakage', 'warn')}, {contract.label}).")
    def leakage(context: dg.AssetCheckExecutionContext, home: PipelineHome) -> dg.AssetCheckResult:
        h = home.paths()
        if not h.accepted_path(EVAL_BATCH).is_file():
            raise dg.Failure("the eval set has not been ingested: materialize eval_images first")
        train, trained, damaged = sharded_samples(home, context.instance)
        eval_table = read_manifest(h.accepted_path(EVAL_BATCH))
        leak_file = h.report_dir(EVAL_BATCH) / "leakage.json"
        leak_file.parent.mkdir(parents=True, exist_ok=True)
        if damaged:  # the verdict would rest on data that is not what image_shards wrote: no pass
            leak_file.write_text(json.dumps({"passed": False, "damaged": damaged, "eval_digest": eval_digest(eval_table),
                                             "batches_checked": trained}, indent=2))
            return check_result(contract, "leakage", False, "damaged shard data, leakage not verifiable: "
                                + " | ".join(terminal(d) for d in damaged), damaged=len(damaged), batches_checked=trained)
        leaks = find_leaks(eval_table, train, bits)
        # the record registered_model's gate reads: passed, on which eval set, against which batches' shards
        leak_file.write_text(json.dumps({**leaks.__dict__, "passed": leaks.passed, "eval_digest": eval_digest(eval_table),
                                         "batches_checked": trained}, indent=2))
        why = leaks.summary() if leaks.passed else (
            f"{leaks.summary()}. Every pair: {leak_file}. Re-run those batches (image_shards leaves copies of eval "
            f"images out), or remove the images from the eval set.")
        return check_result(contract, "leakage", leaks.passed, why, exact=len(leaks.exact), near=len(leaks.near),
                            batches_checked=trained)

    return leakage
