"""Verify everything a pipeline home holds for training: each batch's manifests, shard index and shards.

    report = verify_home(Home.resolve(".sslpipe"), batches=None, full=True)
    for item in report.damaged: print(item.path, item.what, item.rebuild)
    report.ok  # False when anything is damaged

Per batch (every folder under manifests/ or shards/; the eval set's manifests too):
- accepted.parquet and quarantine.parquet are readable Parquet files;
- the shards and index, as ssl_ops.shards.verify.verify_batch checks them (quick: index, sizes, sha256;
  full: every member read back and decoded too);
- the manifest against the shards: the samples the shards hold are the manifest's accepted samples minus
  the index's `excluded` (quick: by count; full: by sample id).
Each damaged item says the command that rebuilds it, quoted to run as printed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ssl_ops.home import EVAL_BATCH, Home
from ssl_ops.shards.verify import BatchCheck, rebuild_command, verify_batch

INGEST = "raw_images,validated_images,bias_report,image_shards"  # re-ingesting a batch rewrites its manifests


@dataclass(frozen=True)
class Damaged:
    batch: str
    path: str
    what: str
    rebuild: str
    note: str = ""  # e.g. the shards were built with other shard settings than the ones given


@dataclass
class HomeReport:
    home: Path
    full: bool
    batches: list[str] = field(default_factory=list)
    shards: int = 0
    samples: int = 0
    damaged: list[Damaged] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.damaged


def home_batches(home: Home) -> list[str]:
    """Batches with manifests or shards in the home (the eval set included), sorted."""
    names = set()
    for parent in (home.root / "manifests", home.root / "shards"):
        if parent.is_dir():
            names |= {p.name for p in parent.iterdir() if p.is_dir()}
    return sorted(names)


GATES = ("validated_images", "bias_report")  # the records assets/gates.py writes in reports/<batch>/


def gates_passed(home: Home, batch: str) -> bool:
    """Both gate assets recorded a decision for the batch and no blocking check of theirs failed: it should have
    shards. (The records are reports/<batch>/<asset>.checks.json; see assets/gates.py.)"""
    for asset in GATES:
        p = home.report_dir(batch) / f"{asset}.checks.json"
        try:
            rec = json.loads(p.read_text())
            if any(c.get("blocking") and not c.get("passed") for c in rec["checks"].values()):
                return False
        except (OSError, ValueError, KeyError, AttributeError):
            return False
    return True


def _manifest_ids(path: Path) -> tuple[set[str] | None, str | None]:
    import pyarrow.parquet as pq

    try:
        return set(pq.read_table(path, columns=["sample_id"]).column("sample_id").to_pylist()), None
    except Exception as e:  # pyarrow raises ArrowInvalid, OSError, KeyError... for a damaged file
        return None, f"unreadable ({type(e).__name__}: {e})"


def verify_home(home: Home, batches: list[str] | None = None, full: bool = True,
                config_file: Path | str | None = None, shard_config: dict | None = None) -> HomeReport:
    """Check the given batches (default: all of home_batches) of a home; never raises for damage.

    config_file: the --config the home is run with, named in the rebuild commands; shard_config: the shard
    settings in effect (defaults + that file): a damaged batch whose index records others gets a note, since
    rebuilding it with these would write other shards."""
    rep = HomeReport(home=home.root, full=full)
    names = home_batches(home) if batches is None else list(batches)
    for b in names:
        rep.batches.append(b)
        ingest = rebuild_command(None, home.root, "eval_images", config_file) if b == EVAL_BATCH else \
            rebuild_command(b, home.root, INGEST, config_file)  # the eval set is not a batch partition
        note = ""

        def damaged(path, what, rebuild):
            rep.damaged.append(Damaged(b, str(path), what, rebuild, note))

        accepted_ids = None
        if not home.accepted_path(b).is_file():
            damaged(home.accepted_path(b), "missing", ingest)
        else:
            accepted_ids, err = _manifest_ids(home.accepted_path(b))
            if err:
                damaged(home.accepted_path(b), err, ingest)
        if home.quarantine_path(b).is_file() or home.accepted_path(b).is_file():
            q = home.quarantine_path(b)
            if not q.is_file():
                damaged(q, "missing", ingest)
            else:
                _, err = _manifest_ids(q)
                if err:
                    damaged(q, err, ingest)
        if b == EVAL_BATCH:
            continue  # the eval set is never sharded
        if not (home.shard_dir(b) / "index.json").is_file():
            if accepted_ids and gates_passed(home, b):  # it passed its checks: its shards were deleted or lost
                damaged(home.shard_dir(b) / "index.json", "missing: the batch passed its checks but has no shard "
                        "index (deleted?)", rebuild_command(b, home.root, "image_shards", config_file))
            continue  # not sharded yet, or blocked by its checks: nothing to check against
        check: BatchCheck = verify_batch(home.shard_dir(b), batch=b, full=full, home=home.root,
                                         config_file=config_file)
        if shard_config is not None and check.config is not None and check.config != shard_config:
            note = (f"its shards were built with shard settings {check.config}, not {shard_config}: run the "
                    f"rebuild with the --config that sets them, or it writes other shards (and another data version)")
        rep.shards += len(check.shards)
        rep.samples += check.samples
        for p in check.problems:
            damaged(p.path, p.what, check.rebuild)
        if check.ok and accepted_ids is not None:
            excluded = {e["sample_id"] for e in json.loads(check.index_path.read_text()).get("excluded", [])
                        if isinstance(e, dict) and "sample_id" in e}
            expected = accepted_ids - excluded
            if full and check.sample_ids is not None and check.sample_ids != expected:
                extra, lost = check.sample_ids - expected, expected - check.sample_ids
                damaged(check.index_path, f"the shards hold {len(extra)} sample(s) not in the manifest (less "
                                          f"excluded) and lack {len(lost)} of it, e.g. "
                                          f"{sorted(extra or lost)[0]}", check.rebuild)
            elif not full and len(expected) != check.samples:
                damaged(check.index_path, f"holds {check.samples} samples; the manifest less excluded has "
                                          f"{len(expected)}", check.rebuild)
    return rep
