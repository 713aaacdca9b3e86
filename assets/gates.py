"""Check records that outlive a run: what each gate asset decided for which manifest.

Dagster's blocking checks stop downstream assets in the same run. A later run that selects only
`image_shards` (a backfill of it, a re-execution of that step) would not see them, so validated_images and
bias_report also write reports/<batch>/<asset>.checks.json, and image_shards refuses to write shards unless
both exist for the current manifest and no blocking check failed.

Why Dagster's own check records cannot serve: in Dagster 1.13 an asset check's evaluations are kept per
check, not per partition (partitioned checks are a preview), so "the latest evaluation of
validated_images:row_count" is that of whichever batch ran last, not of this batch; and an evaluation does not
say which manifest it judged, while a gate must hold for the manifest now on disk (raw_images may have run
again since). The same records tell raw_images and the retrain sensor which batches were rejected.
"""

import json

import dagster as dg

from assets.policies import failure
from ssl_ops.home import Home

GATES = ("validated_images", "bias_report")


def write_checks(home: Home, batch: str, asset: str, manifest_digest: str, contract_label: str,
                 results: list[dg.AssetCheckResult], blocking: dict[str, bool]) -> None:
    out = home.report_dir(batch)
    out.mkdir(parents=True, exist_ok=True)
    record = {"asset": asset, "batch": batch, "manifest_digest": manifest_digest, "contract": contract_label,
              "checks": {r.check_name: {"passed": r.passed, "blocking": blocking[r.check_name],
                                        "summary": r.description} for r in results}}
    (out / f"{asset}.checks.json").write_text(json.dumps(record, indent=2))


def blocking_failures(home: Home, batch: str) -> list[str]:
    """'asset:check: summary' for each blocking check that failed in the latest record of each gate."""
    out = []
    for asset in GATES:
        p = home.report_dir(batch) / f"{asset}.checks.json"
        if p.is_file():
            rec = json.loads(p.read_text())
            out += [f"{asset}:{name}: {c['summary']}" for name, c in rec["checks"].items()
                    if c["blocking"] and not c["passed"]]
    return out


def require_gates_passed(home: Home, batch: str, manifest_digest: str) -> None:
    """Raise dg.Failure unless both gates ran on this manifest and no blocking check of theirs failed."""
    failed = blocking_failures(home, batch)
    if failed:
        raise failure(f"batch {batch!r} failed blocking check(s), so it is not sharded: " + " | ".join(failed))
    for asset in GATES:
        p = home.report_dir(batch) / f"{asset}.checks.json"
        if not p.is_file():
            raise failure(f"{asset} has not run for batch {batch!r}: materialize it before image_shards "
                             f"(or run the whole ingest_batch job)")
        if json.loads(p.read_text())["manifest_digest"] != manifest_digest:
            raise failure(f"{asset} last ran on an older manifest of batch {batch!r} (raw_images was re-run since): "
                             f"materialize validated_images and bias_report for it before image_shards")
