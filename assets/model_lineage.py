"""Lineage both ways, read from the MLflow registry, the Dagster instance and the home (for `sslpipe lineage`).

    rec = model_lineage(home, tracking, instance, "ssl-encoder", "champion")   # model -> data, a JSON-able dict
    rec = image_lineage(home, tracking, instance, sample_id)                   # image -> batches, shards, models

model -> data: the version's lineage tags (assets/registered_model.py: batches, shard index digests, manifest
digests, contract versions, eval digest, git sha, Dagster run id), each batch's shards now against the digests
recorded at training (the index digest from the tag, each shard's sha256 from the training run's result.json
`verified_shards`), the manifests' digests now, the Dagster runs (registration, training, and per batch the
run that last materialized image_shards for that partition), the MLflow run and the review record.

image -> models: the batches whose manifests hold the sample id (accepted or quarantined; one manifest read at
a time, with a pyarrow filter), the shard that holds it, whether it was left out as a copy of an eval image or
is in the eval set, and every registered model version whose batches include a batch that holds it, with
whether that batch's shards are still the ones the version recorded (certain) or were re-sharded since.

Nothing here writes: `instance` and `tracking` may be None when the home has no Dagster instance or no MLflow
store yet; the caller decides (see pipelines/lineage_cli.py).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import dagster as dg

from assets.mlflow_registry import GATE_TAG, HISTORY_PREFIX, REVIEW_TAG, RUN_KEY_TAG
from assets.mlflow_tracking import MlflowTracking, quiet_mlflow
from ssl_ops.home import EVAL_BATCH, Home
from ssl_ops.lineage_index import LineageInputError, compare_sharding, manifest_rows, shard_members
from ssl_ops.manifest import ATTR_PREFIX, read_manifest, table_digest

BATCHES_TAG = "sslpipe.batches"
INDEX_DIGESTS_TAG = "sslpipe.shard_index_digests"
MANIFEST_DIGESTS_TAG = "sslpipe.manifest_digests"


def _iso(ts: float | None) -> str | None:
    return None if ts is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _json_tag(tags: dict, key: str, default):
    try:
        return json.loads(tags[key]) if key in tags else default
    except ValueError:
        return default


def version_batches(tags: dict) -> list[str]:
    """The batches a version trained on: the keys of its shard index digests (batch names may hold commas),
    else its comma-joined batches tag."""
    digests = _json_tag(tags, INDEX_DIGESTS_TAG, None)
    if isinstance(digests, dict) and digests:
        return list(digests)
    return [b for b in tags.get(BATCHES_TAG, "").split(",") if b]


# --- MLflow ------------------------------------------------------------------------------------------------

def registered_models(client) -> list[str]:
    out, token = [], None
    while True:
        page = client.search_registered_models(max_results=1000, page_token=token)
        out += [m.name for m in page]
        token = page.token
        if not token:
            return sorted(out)


def resolve_version(client, name: str, ref: str):
    """The ModelVersion for `name@ref` (ref: version digits or an alias). Raises LineageInputError naming what
    exists when the model, version or alias does not."""
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(name)
    except MlflowException:
        known = registered_models(client)
        raise LineageInputError(f"unknown model {name!r}; registered models: {', '.join(known) or 'none'}") from None
    aliases = dict(model.aliases or {})
    if ref.isdigit():
        try:
            return client.get_model_version(name, ref)
        except MlflowException:
            versions = sorted(int(v.version) for v in _versions(client, f"name = '{_quote(name)}'"))
            raise LineageInputError(f"model {name!r} has no version {ref}; versions: "
                                    f"{', '.join(map(str, versions)) or 'none'}") from None
    if ref not in aliases:
        have = ", ".join(f"{a} -> {v}" for a, v in sorted(aliases.items())) or "none"
        raise LineageInputError(f"model {name!r} has no alias {ref!r}; aliases: {have}")
    return client.get_model_version(name, str(aliases[ref]))


def _quote(s: str) -> str:
    return s.replace("'", "\\'")


def _versions(client, filter_string: str | None = None) -> list:
    out, token = [], None
    while True:
        page = client.search_model_versions(filter_string, max_results=10000, page_token=token)
        out += list(page)
        token = page.token
        if not token:
            return out


def _mlflow_run(client, tracking: MlflowTracking, run_id: str | None) -> dict | None:
    from mlflow.exceptions import MlflowException

    if not run_id:
        return None
    try:
        run = client.get_run(run_id)
    except MlflowException:
        return {"run_id": run_id, "found": False}
    exp = run.info.experiment_id
    return {"run_id": run_id, "found": True, "status": run.info.status, "experiment_id": exp,
            "dagster_run_id": run.data.tags.get("dagster.run_id"),
            "url": f"{tracking.ui_url.rstrip('/')}/#/experiments/{exp}/runs/{run_id}"}


def verified_shards(home: Home, client, run_key: str | None, run_id: str | None) -> tuple[dict, str | None]:
    """{batch: [[shard name, samples, sha256]]} as verified before training, from models/<key>/result.json in
    the home, else the training run's artifact training/result.json. -> (that, where it was read; None if
    neither is there)."""
    if run_key:
        p = home.model_dir(run_key) / "result.json"
        if p.is_file():
            try:
                return json.loads(p.read_text()).get("verified_shards", {}), str(p)
            except ValueError:
                pass
    if client is not None and run_id:
        import tempfile

        from mlflow.exceptions import MlflowException

        with tempfile.TemporaryDirectory(prefix="sslpipe-lineage-") as dst, quiet_mlflow():
            try:
                local = Path(client.download_artifacts(run_id, "training/result.json", dst))
                return json.loads(local.read_text()).get("verified_shards", {}), f"mlflow run {run_id}: training/result.json"
            except (MlflowException, OSError, ValueError):
                pass
    return {}, None


# --- Dagster -------------------------------------------------------------------------------------------------

def dagster_run(instance: dg.DagsterInstance | None, run_id: str | None, dagster_url: str) -> dict | None:
    """{run_id, url, found, status, job, started, ended}; found False when this home's instance lacks it."""
    if not run_id:
        return None
    out = {"run_id": run_id, "url": f"{dagster_url.rstrip('/')}/runs/{run_id}", "found": False}
    if instance is None:
        return out
    rec = instance.get_run_record_by_id(run_id)
    if rec is None:
        return out
    return {**out, "found": True, "status": rec.dagster_run.status.value, "job": rec.dagster_run.job_name,
            "started": _iso(rec.start_time), "ended": _iso(rec.end_time)}


def shards_materializations(instance: dg.DagsterInstance | None, batch: str, dagster_url: str,
                            recorded_digest: str | None, digest_now: str | None, limit: int = 200) -> dict:
    """The run that last materialized image_shards[batch] (with `writes_index_now`: its index digest is the
    one on disk, False when the shards were rewritten outside this instance's runs) and, when its index digest
    is not the recorded one, the latest run whose materialization had the recorded digest (the sharding a
    model trained on)."""
    if instance is None:
        return {"last": None, "recorded": None}
    flt = dg.AssetRecordsFilter(asset_key=dg.AssetKey("image_shards"), asset_partitions=[batch])
    recs = instance.fetch_materializations(flt, limit=limit).records  # newest first

    def describe(r) -> dict:
        md = {k: getattr(v, "value", v) for k, v in r.asset_materialization.metadata.items()}
        run = dagster_run(instance, r.run_id, dagster_url) or {}
        return {**run, "materialized": _iso(r.timestamp), "index_digest": md.get("index_digest"),
                "reused": md.get("reused"), "writes_index_now": md.get("index_digest") == digest_now}

    last = describe(recs[0]) if recs else None
    recorded = None
    if last is not None and recorded_digest and last["index_digest"] != recorded_digest:
        match = next((r for r in recs if getattr(r.asset_materialization.metadata.get("index_digest"), "value", None)
                      == recorded_digest), None)
        recorded = describe(match) if match is not None else None
    return {"last": last, "recorded": recorded}


# --- the home --------------------------------------------------------------------------------------------------

def _index(home: Home, batch: str) -> dict | None:
    p = home.shard_index_path(batch)
    try:
        return json.loads(p.read_text()) if p.is_file() else None
    except (OSError, ValueError):
        return None


def _manifest_digest_now(home: Home, batch: str) -> str | None:
    p = home.accepted_path(batch)
    if not p.is_file():
        return None
    try:
        return table_digest(read_manifest(p))
    except Exception:  # unreadable Parquet: sslpipe verify names it
        return None


def home_batches(home: Home) -> list[str]:
    """Training batches with a manifest folder in the home (not the eval set), sorted."""
    d = home.root / "manifests"
    return sorted(p.name for p in d.iterdir() if p.is_dir() and p.name != EVAL_BATCH) if d.is_dir() else []


# --- model -> data -------------------------------------------------------------------------------------------

def model_lineage(home: Home, tracking: MlflowTracking, client, instance: dg.DagsterInstance | None, name: str,
                  ref: str) -> dict:
    mv = resolve_version(client, name, ref)
    version = str(mv.version)
    tags = dict(mv.tags or {})
    model = client.get_registered_model(name)
    aliases = sorted(a for a, v in (model.aliases or {}).items() if str(v) == version)
    url = tracking.dagster_url
    run_key = tags.get(RUN_KEY_TAG)
    mlflow_run = _mlflow_run(client, tracking, mv.run_id)
    recorded_shards, shards_source = verified_shards(home, client, run_key, mv.run_id)
    index_digests = _json_tag(tags, INDEX_DIGESTS_TAG, {})
    manifest_digests = _json_tag(tags, MANIFEST_DIGESTS_TAG, {})
    batches = []
    for b in version_batches(tags):
        sh = compare_sharding(b, index_digests.get(b), recorded_shards.get(b), _index(home, b), home.shard_dir(b))
        index = _index(home, b) or {}
        m_now = _manifest_digest_now(home, b)
        batches.append({
            "batch": b, "status": sh.status, "index_digest_at_training": sh.recorded_digest,
            "index_digest_now": sh.digest_now, "index": str(home.shard_index_path(b)),
            "shards": sh.shards, "shards_gone_since_training": sh.gone_shards,
            "excluded_eval_copies": len(index.get("excluded", [])),
            "samples_now": index.get("samples"),
            "manifest": str(home.accepted_path(b)), "manifest_digest_at_training": manifest_digests.get(b),
            "manifest_digest_now": m_now,
            "manifest_unchanged": (m_now == manifest_digests.get(b)) if m_now and manifest_digests.get(b) else None,
            "image_shards_runs": shards_materializations(instance, b, url, sh.recorded_digest, sh.digest_now)})
    history = [h for h in _history(model.tags) if version in (h.get("to_version"), h.get("from_version"))]
    return {
        "model": name, "version": version, "requested": f"{name}@{ref}", "aliases": aliases,
        "model_version_url": f"{tracking.ui_url.rstrip('/')}/#/models/{name}/versions/{version}",
        "created": _iso(mv.creation_timestamp / 1000 if mv.creation_timestamp else None),
        "run_key": run_key, "method": tags.get("sslpipe.method"), "backbone": tags.get("sslpipe.backbone"),
        "git_sha": tags.get("sslpipe.git_sha"),
        "contract_versions": _json_tag(tags, "sslpipe.contract_versions", []),
        "eval_digest": tags.get("sslpipe.eval_digest"),
        "mlflow_run": mlflow_run,
        "dagster": {"registration_run": dagster_run(instance, tags.get("dagster.run_id"), url),
                    "training_run": dagster_run(instance, (mlflow_run or {}).get("dagster_run_id"), url),
                    "instance": str(home.dagster_home) if instance is not None else None},
        "shard_digests_at_training_from": shards_source,
        "batches": batches,
        "review": {"state": _json_tag(tags, REVIEW_TAG, None), "gate": _json_tag(tags, GATE_TAG, None),
                   "alias_history": history},
    }


def _history(model_tags: dict) -> list[dict]:
    out = []
    for k in sorted(k for k in (model_tags or {}) if k.startswith(HISTORY_PREFIX)):
        try:
            out.append(json.loads(model_tags[k]))
        except ValueError:
            continue
    return out


# --- image -> models -----------------------------------------------------------------------------------------

def _attributes(row: dict) -> dict:
    return {k[len(ATTR_PREFIX):]: v for k, v in row.items() if k.startswith(ATTR_PREFIX)}


def _model_versions(client) -> list[dict]:
    """Every registered version of every model that records its batches: name, version, aliases, batches,
    index digests, eval digest."""
    if client is None:
        return []
    aliases: dict[str, dict] = {}
    out = []
    for mv in _versions(client):
        tags = dict(mv.tags or {})
        if BATCHES_TAG not in tags and INDEX_DIGESTS_TAG not in tags:
            continue
        if mv.name not in aliases:
            aliases[mv.name] = dict(client.get_registered_model(mv.name).aliases or {})
        out.append({"model": mv.name, "version": str(mv.version),
                    "aliases": sorted(a for a, v in aliases[mv.name].items() if str(v) == str(mv.version)),
                    "batches": version_batches(tags), "index_digests": _json_tag(tags, INDEX_DIGESTS_TAG, {}),
                    "eval_digest": tags.get("sslpipe.eval_digest")})
    return sorted(out, key=lambda v: (v["model"], int(v["version"])))


def image_lineage(home: Home, tracking: MlflowTracking | None, client, instance: dg.DagsterInstance | None,
                  sample_id: str, query: str, file: str | None = None) -> dict:
    """Where the image with this sample id is in the home and which model versions trained on it."""
    versions = _model_versions(client)
    accepted, quarantined = [], []
    for b in home_batches(home):  # one manifest at a time, filtered on read
        for row in manifest_rows(home.accepted_path(b), sample_id):
            index = _index(home, b)
            excluded = next((e for e in (index or {}).get("excluded", []) if e.get("sample_id") == sample_id), None)
            members = shard_members(home.shard_dir(b), index, sample_id) if index and not excluded else {}
            shard = next(iter(members), None)
            models = []
            for v in versions:
                if b not in v["batches"]:
                    continue
                rec, now = v["index_digests"].get(b), (index or {}).get("digest")
                certain = rec is not None and rec == now
                if certain:
                    trained = "yes" if shard else "no"
                    why = (f"in {shard} of the same sharding the version recorded" if shard else
                           "left out of the shards the version trained on" + (" (a copy of an eval image)"
                                                                              if excluded else ""))
                else:
                    trained = "earlier_sharding"
                    why = ("batch re-sharded since training (index digest then " + (rec or "not recorded")
                           + ", now " + (now or "no index") + "): it trained on an earlier sharding, which "
                           "probably held this accepted image, but the shards it read are no longer on disk")
                models.append({"model": v["model"], "version": v["version"], "aliases": v["aliases"],
                               "trained_on_it": trained, "certain": certain, "why": why,
                               "index_digest_at_training": rec, "index_digest_now": now,
                               "model_version_url": (f"{tracking.ui_url.rstrip('/')}/#/models/{v['model']}/versions/"
                                                     f"{v['version']}") if tracking else None})
            runs = shards_materializations(instance, b, tracking.dagster_url if tracking else "", None,
                                           (index or {}).get("digest")) \
                if instance is not None else {"last": None}
            accepted.append({
                "batch": b, "path": row["path"], "landing_path": str(home.batch_dir(b) / row["path"]),
                "landing_file_present": (home.batch_dir(b) / row["path"]).is_file(),
                "bytes": row["bytes"], "format": row["format"], "width": row["width"], "height": row["height"],
                "mode": row["mode"], "attributes": _attributes(row),
                "shard": shard, "shard_path": str(home.shard_dir(b) / shard) if shard else None,
                "members": members.get(shard, []) if shard else [],
                "index_digest": (index or {}).get("digest"), "sharded": index is not None,
                "excluded": excluded, "image_shards_run": runs["last"], "models": models})
        for row in manifest_rows(home.quarantine_path(b), sample_id):
            quarantined.append({"batch": b, "path": row["path"], "landing_path": str(home.batch_dir(b) / row["path"]),
                                "reason": row["reason"], "detail": row["detail"],
                                "duplicate_of": row.get("duplicate_of")})
    in_eval = [{"path": r["path"], "landing_path": str(home.eval_dir / r["path"]), "attributes": _attributes(r)}
               for r in manifest_rows(home.accepted_path(EVAL_BATCH), sample_id)]
    eval_models = []
    if in_eval:
        from ssl_ops.evalset import eval_digest

        digest = eval_digest(read_manifest(home.accepted_path(EVAL_BATCH)))
        eval_models = [{"model": v["model"], "version": v["version"], "aliases": v["aliases"]}
                       for v in versions if v["eval_digest"] == digest]
    eval_quarantined = [{"path": r["path"], "reason": r["reason"], "detail": r["detail"]}
                        for r in manifest_rows(home.quarantine_path(EVAL_BATCH), sample_id)]
    trained = sorted({(m["model"], m["version"]) for a in accepted for m in a["models"]
                      if m["trained_on_it"] != "no"}, key=lambda t: (t[0], int(t[1])))
    return {"sample_id": sample_id, "query": query, "file": file, "home": str(home.root),
            "found": bool(accepted or quarantined or in_eval or eval_quarantined),
            "accepted": accepted, "quarantined": quarantined,
            "eval": {"accepted": in_eval, "quarantined": eval_quarantined, "evaluated_by": eval_models},
            "models": [{"model": m, "version": v} for m, v in trained],
            "models_searched": len(versions), "batches_searched": len(home_batches(home))}
