"""image_shards[batch]: WebDataset shards of the validated batch (ssl_ops.shards); the index digest is the data version.

It is also the repair: shards whose size or sha256 differ from the index, or an index that is not
self-consistent (edited by hand), are rewritten from the landing files (deterministic: the same bytes as
before the damage). `sslpipe verify` prints `sslpipe run --select image_shards --batches <batch>` for them.
"""

import time
from pathlib import Path

import dagster as dg

from assets.config import config_from_dataclass
from assets.gates import require_gates_passed
from assets.partitions import batches
from assets.policies import IO_RETRY
from assets.records import EvalSet
from assets.resources import PipelineHome
from data_contracts import Contract
from ssl_ops.leakage import copies_of_eval
from ssl_ops.manifest import read_manifest, table_digest
from ssl_ops.pixel_match import FolderSource, PixelMatcher
from ssl_ops.shards import ShardConfig, shard_batch


def eval_copies(eval_set: EvalSet, manifest, bits: int, matcher: PixelMatcher | None = None,
                unconfirmed: list | None = None) -> list[dict]:
    """This batch's images that are copies of eval images (sha256, or pHash within `bits` confirmed by the pixels
    when a matcher is given): never trained on. pHash matches the pixels reject go to `unconfirmed`."""
    return copies_of_eval(read_manifest(Path(eval_set.manifest)), manifest, bits, matcher, unconfirmed)


def build_image_shards(eval_contract: Contract, shard_defaults: dict | None = None,
                       links: str = "inside") -> dg.AssetsDefinition:
    """shard_defaults: the configured ShardConfig values (settings); the launchpad can still override them."""
    ShardRunConfig = config_from_dataclass(ShardConfig, "ShardRunConfig", shard_defaults or {})
    bits = eval_contract.leakage_bits if eval_contract.leakage_bits is not None else 4
    max_px, min_r = eval_contract.leakage_max_pixel_difference, eval_contract.leakage_min_correlation

    @dg.asset(partitions_def=batches, group_name="data", code_version="1",
              deps=["raw_images", "validated_images", "bias_report"], kinds={"webdataset"},
              retry_policy=IO_RETRY,
              description="Deterministic, atomic WebDataset tar shards of the accepted samples (original bytes + a "
                          ".json of attributes) with index.json (per shard: samples, bytes, sha256). Written only "
                          "when the batch passed its blocking checks; copies of eval images are left out and listed; "
                          "unchanged input is not re-sharded; damaged shards or a hand-edited index are rewritten.")
    def image_shards(context: dg.AssetExecutionContext, config: ShardRunConfig, home: PipelineHome,
                     eval_images: EvalSet) -> dg.MaterializeResult:
        h = home.paths()
        batch = context.partition_key
        manifest = read_manifest(h.accepted_path(batch))
        require_gates_passed(h, batch, table_digest(manifest))
        home.stage_batch(batch)  # with a prefix: the landing copy the manifest was made from (usually in place)
        matcher = PixelMatcher({"eval": FolderSource(h.eval_dir), "train": FolderSource(h.batch_dir)}, max_px, min_r)
        not_copies: list[dict] = []
        exclude = eval_copies(eval_images, manifest, bits, matcher, not_copies)
        if not_copies:
            context.log.info(f"image_shards[{batch}]: {len(not_copies)} pHash match(es) with eval images not confirmed "
                             f"by the pixels (mean pixel difference > {max_px:g} or correlation < {min_r:g}): kept "
                             f"in the shards")
        if exclude:
            context.log.warning(f"image_shards[{batch}]: {len(exclude)} image(s) are copies of eval images and are left "
                                f"out of the shards (listed in index.json 'excluded'), e.g. {exclude[0]['path']} ~ "
                                f"eval {exclude[0]['matches']}")
        t0 = time.perf_counter()
        index = shard_batch(manifest, h.batch_dir(batch), h.shard_dir(batch), config.to_library(),
                            progress=lambda d, n: context.log.info(f"image_shards[{batch}]: {d}/{n} samples"),
                            exclude=exclude, links=links)
        secs = time.perf_counter() - t0
        context.log.info(f"image_shards[{batch}]: {index.samples} samples in {len(index.shards)} shard(s), "
                         f"{'reused (input unchanged)' if index.reused else f'written in {secs:.1f}s'}")
        published = home.publish("shards", batch, context.log)  # with a prefix: the shards, then index.json last
        return dg.MaterializeResult(
            data_version=dg.DataVersion(index.digest),
            metadata={"shards": len(index.shards), "samples": index.samples,
                      "bytes": sum(s["bytes"] for s in index.shards), "index_digest": index.digest,
                      "input_digest": index.input_digest, "reused": index.reused,
                      "excluded_eval_copies": len(index.excluded), "phash_not_confirmed": len(not_copies),
                      "samples_per_second": round(index.samples / max(secs, 1e-9), 1) if not index.reused else 0.0,
                      "index": dg.MetadataValue.path(str(h.shard_index_path(batch))),
                      **({"published": dg.MetadataValue.url(f"{published}/index.json")} if published else {}),
                      "dagster/row_count": index.samples},
        )

    return image_shards
