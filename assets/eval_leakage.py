"""eval_images:leakage: no eval image in any training shard (sha256, or pHash within the contract's distance).

A check of its own, not part of the eval_images materialization, so that it runs after the shards are final:
`sslpipe run` runs it last, and in the UI it is the `check_eval_leakage` job or the check's own button.
"""

import json

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from assets.checks import check_result
from assets.partitions import batches
from assets.resources import PipelineHome
from data_contracts import Contract
from ssl_ops.evalset import eval_digest
from ssl_ops.home import EVAL_BATCH
from ssl_ops.leakage import empty_train_table, find_leaks
from ssl_ops.manifest import read_manifest
from ssl_ops.shards import load_index


def sharded_samples(home: PipelineHome, instance: dg.DagsterInstance) -> tuple[pa.Table, list[str]]:
    """The samples in training shards now: each sharded batch's manifest minus what its index left out."""
    h = home.paths()
    tables, names = [], []
    for b in instance.get_dynamic_partitions(batches.name):
        index = load_index(h.shard_index_path(b))
        if index is None or not h.accepted_path(b).is_file():
            continue
        t = read_manifest(h.accepted_path(b), ["sample_id", "batch", "path", "phash", "contrast"])
        if index.excluded:
            t = t.filter(pc.invert(pc.is_in(t.column("sample_id"), value_set=pa.array([e["sample_id"] for e in index.excluded]))))
        tables.append(t)
        names.append(b)
    return (pa.concat_tables(tables) if tables else empty_train_table()), names


def build_eval_leakage(contract: Contract) -> dg.AssetChecksDefinition:
    bits = contract.leakage_bits if contract.leakage_bits is not None else 4

    @dg.asset_check(asset="eval_images", name="leakage", blocking=contract.blocking("leakage"),
                    description=f"No eval image is in a training shard, by sha256 or within {bits} pHash bits "
                                f"({contract.checks.get('leakage', 'warn')}, {contract.label}).")
    def leakage(context: dg.AssetCheckExecutionContext, home: PipelineHome) -> dg.AssetCheckResult:
        h = home.paths()
        if not h.accepted_path(EVAL_BATCH).is_file():
            raise dg.Failure("the eval set has not been ingested: materialize eval_images first")
        train, trained = sharded_samples(home, context.instance)
        eval_table = read_manifest(h.accepted_path(EVAL_BATCH))
        leaks = find_leaks(eval_table, train, bits)
        leak_file = h.report_dir(EVAL_BATCH) / "leakage.json"
        leak_file.parent.mkdir(parents=True, exist_ok=True)
        # the record registered_model's gate reads: passed, on which eval set, against which batches' shards
        leak_file.write_text(json.dumps({**leaks.__dict__, "passed": leaks.passed, "eval_digest": eval_digest(eval_table),
                                         "batches_checked": trained}, indent=2))
        why = leaks.summary() if leaks.passed else (
            f"{leaks.summary()}. Every pair: {leak_file}. Re-run those batches (image_shards leaves copies of eval "
            f"images out), or remove the images from the eval set.")
        return check_result(contract, "leakage", leaks.passed, why, exact=len(leaks.exact), near=len(leaks.near),
                            batches_checked=trained)

    return leakage
