"""Benchmark: the same ingest-and-shard work with a local home and with an object-storage prefix (s3:// on the
loopback S3 server), as a ratio measured in one command.

    python bench/storage_ingest.py [--limit 5000] [--repeat 3]

local:  scan_batch of a landing folder + manifests written + shard_batch (what raw_images and image_shards do
        with a local home).
s3:     the same, as production runs it (assets/resources.py PipelineHome with `remote`): the batch pulled from
        landing/<batch>/ into an empty working copy, scanned, the manifests published, sharded, and the shards
        published (index.json last).
The landing upload (the producer's cost) is done once before the clocks. Each repeat runs local then s3 back to
back; the ratio reported is the median of the per-repeat ratios s3/local (seconds), with the phases of s3.
The server's own limit is measured in the same repeat: a bare GET of every landed object (boto3, one after the
other: moto's server answers one request at a time, so concurrency gains nothing there), against which the
pull's time is a ratio too.
Services: those of the environment (`source .services/env`), else scripts/services starts its own for the run.
CIFAR-10's train JPEGs come from ../shared/datasets (extracted once into bench/_data, git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from bench.ingest_and_shard import DATA, extract  # noqa: E402
from ssl_ops.ingest import ImageLimits, list_batch_files, scan_batch  # noqa: E402
from ssl_ops.manifest import write_table_atomic  # noqa: E402
from ssl_ops.shards import ShardConfig, shard_batch  # noqa: E402

BATCH = "bench-001"


def subset(limit: int) -> Path:
    root = extract()
    sub = DATA.parent / f"cifar10-train-{limit}"
    done = sub.with_name(sub.name + ".complete")  # beside it: a file in the batch would be ingested too
    if not done.exists():
        shutil.rmtree(sub, ignore_errors=True)
        for r in list_batch_files(root)[:limit]:
            (sub / r).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / r, sub / r)
        done.write_text("ok")
    return sub


def local_pass(home, workers: int) -> dict:
    h = home.paths()
    t0 = time.perf_counter()
    res = scan_batch(h.batch_dir(BATCH), BATCH, ImageLimits(), workers=workers)
    write_table_atomic(res.accepted, h.accepted_path(BATCH))
    write_table_atomic(res.quarantine, h.quarantine_path(BATCH))
    t1 = time.perf_counter()
    shard_batch(res.accepted, h.batch_dir(BATCH), h.shard_dir(BATCH), ShardConfig(max_samples=2048))
    t2 = time.perf_counter()
    return {"scan": t1 - t0, "shard": t2 - t1, "total": t2 - t0, "files": res.seen}


def s3_pass(home, workers: int) -> dict:
    h = home.paths()
    t0 = time.perf_counter()
    home.stage_batch(BATCH)
    t1 = time.perf_counter()
    res = scan_batch(h.batch_dir(BATCH), BATCH, ImageLimits(), workers=workers)
    write_table_atomic(res.accepted, h.accepted_path(BATCH))
    write_table_atomic(res.quarantine, h.quarantine_path(BATCH))
    t2 = time.perf_counter()
    home.publish("manifests", BATCH)
    t3 = time.perf_counter()
    shard_batch(res.accepted, h.batch_dir(BATCH), h.shard_dir(BATCH), ShardConfig(max_samples=2048))
    t4 = time.perf_counter()
    home.publish("shards", BATCH)
    t5 = time.perf_counter()
    return {"pull": t1 - t0, "scan": t2 - t1, "publish_manifests": t3 - t2, "shard": t4 - t3,
            "publish_shards": t5 - t4, "total": t5 - t0, "files": res.seen}


def raw_gets(svc, prefix: str) -> float:
    """Seconds to GET every object of the landed batch with boto3, bodies read and dropped: the server's limit."""
    import boto3

    bucket, _, key = prefix[len("s3://"):].partition("/")
    c = boto3.client("s3", endpoint_url=svc.s3_endpoint)
    keys = [o["Key"] for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                             Prefix=f"{key}/landing/{BATCH}/")
            for o in page.get("Contents", [])]
    t = time.perf_counter()
    for k in keys:
        c.get_object(Bucket=bucket, Key=k)["Body"].read()
    return time.perf_counter() - t


def main() -> None:
    from assets.resources import PipelineHome
    from services import Services
    from ssl_ops.storage import ObjectStore

    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=5000, help="CIFAR-10 train JPEGs in the batch")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    a = ap.parse_args()
    src = subset(a.limit)
    svc, own = Services.from_environ(), None
    if svc is None:
        own = Path(tempfile.mkdtemp(prefix="sslpipe-bench-services-"))
        print(f"starting the services in {own} ...", flush=True)
        svc = Services.start(own)
    for k, v in svc.env.items():
        os.environ[k] = v  # this process is the user's shell here: s3fs reads the AWS_* credentials
    work = Path(tempfile.mkdtemp(prefix="sslpipe-bench-storage-"))
    prefix = f"s3://{svc.env.get('SSLPIPE_S3_BUCKET', 'sslpipe')}/bench-{uuid.uuid4().hex[:8]}"
    try:
        store = ObjectStore(prefix, {"endpoint_url": svc.s3_endpoint})
        t = time.perf_counter()
        store.publish(src, f"landing/{BATCH}")
        upload = time.perf_counter() - t
        print(f"landed {a.limit} files as objects under {prefix}/landing/{BATCH} in {upload:.1f}s (not timed below)",
              flush=True)
        runs = []
        for i in range(a.repeat):
            lh = work / f"local-{i}"
            shutil.copytree(src, lh / "landing" / BATCH)
            local = local_pass(PipelineHome(root=str(lh)), a.workers)
            rh = work / f"s3-{i}"  # an empty working copy: everything comes from the prefix
            remote = s3_pass(PipelineHome(root=str(rh), remote=prefix,
                                          storage_options={"endpoint_url": svc.s3_endpoint}), a.workers)
            raw = raw_gets(svc, prefix)
            runs.append({"local": local, "s3": remote, "ratio": remote["total"] / local["total"], "raw_get": raw,
                         "pull_vs_raw_get": remote["pull"] / raw})
            print(f"repeat {i + 1}: local {local['total']:.1f}s, s3 {remote['total']:.1f}s "
                  f"(pull {remote['pull']:.1f}, scan {remote['scan']:.1f}, publish manifests "
                  f"{remote['publish_manifests']:.1f}, shard {remote['shard']:.1f}, publish shards "
                  f"{remote['publish_shards']:.1f}) -> ratio {runs[-1]['ratio']:.2f}; bare GET of every object "
                  f"{raw:.1f}s (pull / bare GET {remote['pull'] / raw:.2f})", flush=True)
            shutil.rmtree(lh), shutil.rmtree(rh)
        ratio = statistics.median(r["ratio"] for r in runs)
        best = min(r["s3"]["total"] for r in runs) / min(r["local"]["total"] for r in runs)
        files = runs[0]["local"]["files"]
        print(json.dumps({"files": files, "workers": a.workers, "endpoint": svc.s3_endpoint, "runs": runs,
                          "ratio_median": round(ratio, 3), "ratio_best_of": round(best, 3)}, indent=1, default=str))
        lrate = files / statistics.median(r["local"]["total"] for r in runs)
        srate = files / statistics.median(r["s3"]["total"] for r in runs)
        print(f"ingest+shard of {files} images: local {lrate:,.0f} images/s, s3 (loopback server) {srate:,.0f} "
              f"images/s -> s3/local time ratio {ratio:.2f} (median of {a.repeat}; best-of ratio {best:.2f}); the pull "
              f"takes {statistics.median(r['pull_vs_raw_get'] for r in runs):.2f}x a bare GET of every object, the "
              f"server's limit")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if own is not None:
            svc.stop()
            shutil.rmtree(own, ignore_errors=True)


if __name__ == "__main__":
    main()
