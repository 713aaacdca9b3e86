"""Lineage read back from the Dagster instance and the home: what an asset upstream last materialized, and
the digests and versions that tie a model to its data and code."""

import functools
import json
import subprocess
from pathlib import Path

import dagster as dg

from ssl_ops.home import EVAL_BATCH, Home


def latest_metadata(instance: dg.DagsterInstance, asset: str) -> dict | None:
    """The raw metadata values of the asset's latest materialization (None if it was never materialized)."""
    ev = instance.get_latest_materialization_event(dg.AssetKey(asset))
    if ev is None or ev.asset_materialization is None:
        return None
    return {k: getattr(v, "value", v) for k, v in ev.asset_materialization.metadata.items()} | {
        "_run_id": ev.run_id}


def require_upstream(instance: dg.DagsterInstance, asset: str, needed_by: str) -> dict:
    md = latest_metadata(instance, asset)
    if md is None:
        raise dg.Failure(f"{needed_by}: {asset} has never been materialized; materialize it first "
                         f"(sslpipe run, or the train_encoder job)")
    return md


@functools.cache
def git_sha() -> str:
    """The code version: the project checkout's git commit (with '-dirty' when it has changes), or 'unknown'."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def batch_lineage(h: Home, batches: list[str]) -> tuple[dict, dict]:
    """-> ({batch: manifest digest}, {batch: contract label}) from the gates' records (assets/gates.py)."""
    manifests, contracts = {}, {}
    for b in batches:
        p = h.report_dir(b) / "validated_images.checks.json"
        if p.is_file():
            rec = json.loads(p.read_text())
            manifests[b], contracts[b] = rec["manifest_digest"], rec["contract"]
    return manifests, contracts


def leakage_finding(h: Home, batches: list[str], eval_digest: str) -> tuple[bool, str]:
    """Did the eval set's leakage check pass, on this eval set, against every batch the model trained on?"""
    p = h.report_dir(EVAL_BATCH) / "leakage.json"
    if not p.is_file():
        return False, "the eval set's leakage check has not run (job check_eval_leakage)"
    rec = json.loads(p.read_text())
    if rec.get("eval_digest") != eval_digest:
        return False, "the leakage check ran on another version of the eval set; run check_eval_leakage again"
    missing = [b for b in batches if b not in rec.get("batches_checked", [])]
    if missing:
        return False, f"the leakage check did not cover batch(es) {missing}; run check_eval_leakage again"
    if not rec.get("passed"):
        return False, (f"{len(rec.get('exact', []))} eval image(s) identical to and {len(rec.get('near', []))} "
                       f"near-identical to training images (see {p})")
    return True, f"no eval image in the shards of {len(batches)} batch(es) ({rec['eval_images']} eval images checked)"
