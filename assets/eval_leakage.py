"""eval_leakage: the leakage decision, an asset of its own with a blocking check `leakage`: no eval image in
any training shard (sha256, or pHash within the contract's distance confirmed by the pixels: ssl_ops.pixel_match;
the few candidate pairs' images are read from the eval folder and, by tar offset, from the shards).

It depends on every image_shards partition and on eval_images, so Dagster runs it after the shards are final;
ssl_encoder depends on it (its check blocks training in the same run) and takes the decision as a typed input
(assets/records.py), which says on which eval set and which shard index digests it was decided: training
refuses batches whose shards changed since.

It relies on the shard indexes (which samples were left out) and on the shards themselves, so it verifies
them first: each index's digest and counts, each shard's size and sha256, and it takes the samples from the
shards' own member names (a manifest row is compared only when its sample is really in a shard). A damaged
index or shard, or a shard holding a sample its manifest lacks, fails the check naming it and the command
that rebuilds it: a leak could hide there.
"""

import hashlib
import json
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from assets.checks import check_result
from assets.partitions import batches
from assets.policies import failure
from assets.records import EvalSet, LeakageDecision
from assets.resources import PipelineHome
from data_contracts import Contract
from ssl_ops.atomic import atomic_write
from ssl_ops.escape import terminal
from ssl_ops.evalset import eval_digest
from ssl_ops.home import EVAL_BATCH
from ssl_ops.leakage import empty_train_table, find_leaks
from ssl_ops.manifest import read_manifest
from ssl_ops.pixel_match import FolderSource, PixelMatcher, ShardSource
from ssl_ops.shards.verify import verify_batch


def sharded_samples(home: PipelineHome, instance: dg.DagsterInstance,
                    members: dict | None = None) -> tuple[pa.Table, dict[str, str], list[str]]:
    """The samples in training shards now: the manifest rows of the sample ids each sharded batch's (verified)
    shards hold. -> (table, {batch: index digest}, damaged: 'path: what; rebuild with: command').
    members: filled with {sample id: (shard, offset, size)} of the image members (ssl_ops.pixel_match.ShardSource)."""
    h = home.paths()
    members = {} if members is None else members
    tables, names, damaged = [], {}, []
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
        ids = set()
        for s in check.shards:  # tar headers only: the sample ids, and where each image's bytes are
            m = ShardSource.members_of(Path(s["path"]))
            ids.update(m)
            members.update({k: v for k, v in m.items() if v is not None})
        t = read_manifest(h.accepted_path(b), ["sample_id", "batch", "path", "phash", "contrast"])
        t = t.filter(pc.is_in(t.column("sample_id"), value_set=pa.array(sorted(ids), pa.string())))
        if t.num_rows != len(ids):
            damaged.append(f"{h.shard_dir(b)}: its shards hold {len(ids) - t.num_rows} sample(s) that its manifest "
                           f"lacks (cannot be checked for leakage). Rebuild with: {check.rebuild}")
        tables.append(t)
        names[b] = check.digest
    return (pa.concat_tables(tables) if tables else empty_train_table()), names, damaged


def build_eval_leakage(contract: Contract) -> dg.AssetsDefinition:
    bits = contract.leakage_bits if contract.leakage_bits is not None else 4
    max_px, min_r = contract.leakage_max_pixel_difference, contract.leakage_min_correlation
    blocking = contract.blocking("leakage")

    @dg.asset(group_name="eval", code_version="3", kinds={"webdataset"},
              deps=[dg.AssetDep("image_shards", partition_mapping=dg.AllPartitionMapping())],
              check_specs=[dg.AssetCheckSpec("leakage", asset="eval_leakage", blocking=blocking,
                                             description=f"No eval image is in a training shard, by sha256 or within "
                                                         f"{bits} pHash bits confirmed by the pixels (mean difference <= {max_px:g}, "
                                                         f"correlation >= {min_r:g}) "
                                                         f"({contract.checks.get('leakage', 'warn')}, "
                                                         f"{contract.label}).")],
              description="The leakage decision: is any eval image (sha256, or pHash within the contract's bits) in the "
                          "shards of any batch, as they are now? Its check blocks training (ssl_encoder) when it "
                          "fails; every pair is listed in reports/eval/leakage.json.")
    def eval_leakage(context: dg.AssetExecutionContext, home: PipelineHome, eval_images: EvalSet):  # -> MaterializeResult with value=LeakageDecision
        h = home.paths()
        members: dict = {}
        train, digests, damaged = sharded_samples(home, context.instance, members)
        eval_table = read_manifest(Path(eval_images.manifest))
        if eval_digest(eval_table) != eval_images.digest:
            raise failure(f"eval_leakage: the eval manifest {eval_images.manifest} changed since eval_images "
                          f"recorded it; materialize eval_images again")
        leak_file = h.report_dir(EVAL_BATCH) / "leakage.json"
        if damaged:  # the verdict would rest on data that is not what image_shards wrote: no pass
            record = {"passed": False, "damaged": damaged, "eval_digest": eval_images.digest, "batches_checked": digests}
            why = "damaged shard data, leakage not verifiable: " + " | ".join(terminal(d) for d in damaged)
            exact = near = 0
        else:
            matcher = PixelMatcher({"eval": FolderSource(h.eval_dir), "train": ShardSource(members)}, max_px, min_r)
            leaks = find_leaks(eval_table, train, bits, matcher)
            record = {**leaks.__dict__, "passed": leaks.passed, "eval_digest": eval_images.digest,
                      "batches_checked": digests}
            why = leaks.summary() if leaks.passed else (
                f"{leaks.summary()}. Every pair: {leak_file}. Re-run those batches (image_shards leaves copies of eval "
                f"images out), or remove the images from the eval set.")
            exact, near = len(leaks.exact), len(leaks.near)
            if leaks.unconfirmed:
                context.log.info(f"eval_leakage: {len(leaks.unconfirmed)} pHash match(es) not confirmed by the pixels "
                                 f"(not leaks), each in {leak_file} under 'unconfirmed'; read "
                                 f"{matcher.images_read} image(s) to decide")
        atomic_write(leak_file, lambda f: f.write(json.dumps(record, indent=2).encode()))
        decision = LeakageDecision(passed=bool(record["passed"]), blocking=blocking, eval_digest=eval_images.digest,
                                   batches=digests, exact=exact, near=near, damaged=damaged, summary=why[:2000],
                                   report=str(leak_file))
        context.log.info(f"eval_leakage: {why}")
        return dg.MaterializeResult(
            value=decision,
            data_version=dg.DataVersion(hashlib.sha256(json.dumps(
                [decision.passed, decision.eval_digest, sorted(digests.items())]).encode()).hexdigest()[:32]),
            check_results=[check_result(contract, "leakage", decision.passed, why, exact=exact, near=near,
                                        damaged=len(damaged), batches_checked=sorted(digests))],
            metadata={"passed": decision.passed, "exact": exact, "near": near, "batches_checked": len(digests),
                      "phash_not_confirmed": len(record.get("unconfirmed", [])),
                      "eval_digest": eval_images.digest, "pairs": dg.MetadataValue.path(str(leak_file))})

    return eval_leakage
