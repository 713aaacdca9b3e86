"""What the unpartitioned assets hand to each other: small typed records, passed as Dagster inputs.

    eval_images   -> EvalSet           -> image_shards (the eval copies to leave out), eval_leakage, probe_report,
                                          registered_model
    eval_leakage  -> LeakageDecision   -> ssl_encoder (trains only on batches the decision covered, as they are
                                          now), registered_model (the gate's leakage check)
    ssl_encoder   -> TrainedEncoder    -> probe_report, registered_model
    probe_report  -> ProbeResult       -> registered_model
    registered_model -> RegisteredVersion

RecordIOManager stores each record as JSON in <home>/records/<asset>.json (written whole or not at all), so a
run that selects only registered_model (a re-execution from the UI, a retry) loads the same records the run
that made them wrote, typed, instead of reading "the latest materialization's metadata" and checking that
the pieces belong together. The per-batch assets pass their data through the home's files (manifests,
shards), whose paths come from the PipelineHome resource.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import dagster as dg

from ssl_ops.atomic import atomic_write


@dataclasses.dataclass(frozen=True)
class EvalSet:
    digest: str  # ssl_ops.evalset.eval_digest of the accepted eval manifest
    manifest: str  # its path
    images: int
    classes: int
    groups: list[str]


@dataclasses.dataclass(frozen=True)
class LeakageDecision:
    passed: bool  # no eval image in any training shard (and every shard verifiable)
    blocking: bool  # the contract makes a failed decision block training
    eval_digest: str  # the eval set it was decided on
    batches: dict[str, str]  # batch -> the shard index digest it was decided on
    exact: int
    near: int
    damaged: list[str]
    summary: str
    report: str  # reports/eval/leakage.json: every pair

    def covers(self, batch: str, index_digest: str) -> bool:
        return self.batches.get(batch) == index_digest


@dataclasses.dataclass(frozen=True)
class TrainedEncoder:
    run_key: str
    batches: list[str]
    shard_index_digests: dict[str, str]
    samples: int
    method: str
    backbone: str
    image_size: int
    encoder: str  # models/<key>/encoder.pt
    mlflow_run_id: str
    mlflow_run: str  # its URL
    reused: bool


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    key: str
    report: str  # models/<run key>/probe/<key>.json
    run_key: str
    eval_digest: str
    champion_version: str | None


@dataclasses.dataclass(frozen=True)
class RegisteredVersion:
    model_name: str
    version: str
    run_key: str
    gate_passed: bool
    review: str  # pending, approved, gate_failed, ...


RECORDS = {c.__name__: c for c in (EvalSet, LeakageDecision, TrainedEncoder, ProbeResult, RegisteredVersion)}


class RecordIOManager(dg.ConfigurableIOManager):
    """Typed records (RECORDS) as JSON files in <root>/records/. Only unpartitioned assets return records."""

    root: str  # the home folder (SSLPIPE_HOME)

    def _path(self, key: dg.AssetKey) -> Path:
        return Path(self.root) / "records" / f"{'.'.join(key.path)}.json"

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        if obj is None:
            return
        if type(obj).__name__ not in RECORDS:
            raise TypeError(f"{context.asset_key.to_user_string()}: RecordIOManager stores records of "
                            f"{sorted(RECORDS)}, not {type(obj).__name__}")
        data = json.dumps({"type": type(obj).__name__, "value": dataclasses.asdict(obj)}, indent=1).encode()
        atomic_write(self._path(context.asset_key), lambda f: f.write(data))

    def load_input(self, context: dg.InputContext):
        key = context.upstream_output.asset_key if context.upstream_output else context.asset_key
        path = self._path(key)
        if not path.is_file():
            raise dg.Failure(f"{key.to_user_string()} has not been materialized in this home ({path} is missing): "
                             f"materialize it first (sslpipe run, or its job in the UI)", allow_retries=False)
        stored = json.loads(path.read_text())
        cls = RECORDS.get(stored.get("type"))
        if cls is None:
            raise dg.Failure(f"{path}: not a record of this version of sslpipe (type {stored.get('type')!r}); "
                             f"materialize {key.to_user_string()} again", allow_retries=False)
        fields = {f.name for f in dataclasses.fields(cls)}
        if set(stored["value"]) != fields:
            raise dg.Failure(f"{path}: written by another version of sslpipe (fields differ); materialize "
                             f"{key.to_user_string()} again", allow_retries=False)
        return cls(**stored["value"])


def record_path(root: str | Path, asset: str) -> Path:
    """Where RecordIOManager keeps an asset's record (for tools that read it outside a run)."""
    return Path(root) / "records" / f"{asset}.json"


def read_record(root: str | Path, asset: str):
    """The asset's record, or None if it was never materialized in this home."""
    p = record_path(root, asset)
    if not p.is_file():
        return None
    stored = json.loads(p.read_text())
    cls = RECORDS.get(stored.get("type"))
    return cls(**stored["value"]) if cls else None
