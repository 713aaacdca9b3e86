"""image_shards[batch]: WebDataset shards of the validated batch (ssl_ops.shards); the index digest is the data version."""


import time

import dagster as dg

from assets.config import ShardRunConfig
from assets.partitions import batches
from assets.resources import PipelineHome
from ssl_ops.manifest import read_manifest
from ssl_ops.shards import shard_batch


@dg.asset(partitions_def=batches, group_name="data", code_version="1", deps=["raw_images", "validated_images", "bias_report"],
          kinds={"webdataset"},
          description="Deterministic, atomic WebDataset tar shards of the accepted samples (original bytes + a .json "
                      "of attributes) with index.json (per shard: samples, bytes, sha256). Unchanged input is not "
                      "re-sharded.")
def image_shards(context: dg.AssetExecutionContext, config: ShardRunConfig, home: PipelineHome) -> dg.MaterializeResult:
    h = home.paths()
    batch = context.partition_key
    manifest = read_manifest(h.accepted_path(batch))
    t0 = time.perf_counter()
    index = shard_batch(manifest, h.batch_dir(batch), h.shard_dir(batch), config.to_library(),
                        progress=lambda d, n: context.log.info(f"image_shards[{batch}]: {d}/{n} samples"))
    secs = time.perf_counter() - t0
    context.log.info(f"image_shards[{batch}]: {index.samples} samples in {len(index.shards)} shard(s), "
                     f"{'reused (input unchanged)' if index.reused else f'written in {secs:.1f}s'}")
    return dg.MaterializeResult(
        data_version=dg.DataVersion(index.digest),
        metadata={"shards": len(index.shards), "samples": index.samples,
                  "bytes": sum(s["bytes"] for s in index.shards), "index_digest": index.digest,
                  "input_digest": index.input_digest, "reused": index.reused,
                  "samples_per_second": round(index.samples / max(secs, 1e-9), 1) if not index.reused else 0.0,
                  "index": dg.MetadataValue.path(str(h.shard_index_path(batch))),
                  "dagster/row_count": index.samples},
    )
