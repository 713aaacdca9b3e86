"""Lineage: the digests and versions that tie a model to its data and code."""

import functools
import json
import subprocess
from pathlib import Path


from assets.records import LeakageDecision, TrainedEncoder
from ssl_ops.home import Home


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


def leakage_finding(decision: LeakageDecision, encoder: TrainedEncoder, eval_digest: str) -> tuple[bool, str]:
    """Did the leakage decision pass, on this eval set, against the shards (as trained on) of every batch?"""
    if decision.eval_digest != eval_digest:
        return False, "the leakage decision was made on another version of the eval set; materialize eval_leakage"
    missing = [b for b in encoder.batches if not decision.covers(b, encoder.shard_index_digests[b])]
    if missing:
        return False, f"the leakage decision did not cover the shards of batch(es) {missing}; materialize eval_leakage"
    if not decision.passed:
        return False, decision.summary
    return True, f"no eval image in the shards of {len(encoder.batches)} batch(es)"
