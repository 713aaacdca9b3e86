"""`sslpipe lineage`: what made a model (model -> data), and which models an image went into (image -> models).

    sslpipe lineage ssl-encoder@3 [--home DIR] [--config FILE] [--json]
    sslpipe lineage ssl-encoder@champion --json
    sslpipe lineage --image landing/2026-11-23/cat.jpg [--home DIR] [--json]
    sslpipe lineage --image 3e1483222c922d284a6c26d2345c832cfb7d51e1508db36f99856802f6e9fdaa

Exit status: 0 answered; 1 the image is in no batch and not in the eval set; 2 bad input (unknown model,
version or alias, a malformed spec or sha256, an image file that does not exist, no home), which changes
nothing. With --json, stdout holds one JSON document and nothing else (messages go to stderr). Every value
from the data (batch and file names, attributes, reasons, tags) is printed through ssl_ops.escape.terminal.
The queries live in assets/model_lineage.py.
"""

from __future__ import annotations

import argparse
import json
import sys

from ssl_ops.escape import terminal as t
from ssl_ops.lineage_index import LineageInputError, image_sample_id, parse_model_spec, short


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add the lineage command to the `sslpipe` parser; it sets `handler` (args -> exit status)."""
    p = sub.add_parser("lineage", help="model -> data (MODEL@VERSION or MODEL@ALIAS) or image -> models (--image); "
                                       "exit 0: answered, 1: image not found, 2: bad input")
    p.add_argument("spec", nargs="?", metavar="MODEL@VERSION|MODEL@ALIAS",
                   help="a registered model version, e.g. ssl-encoder@3 or ssl-encoder@champion")
    p.add_argument("--image", metavar="PATH|SHA256",
                   help="an image file (its bytes are hashed) or its 64-hex-digit sha256 (the sample id)")
    p.add_argument("--home", help="state folder (default $SSLPIPE_HOME or ./.sslpipe)")
    p.add_argument("--config", help="the YAML config the home is run with (registry.model_name)")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout, nothing else")
    p.set_defaults(handler=lineage)


def _err(msg: str) -> None:
    print(f"sslpipe lineage: {t(msg)}", file=sys.stderr)


def lineage(a: argparse.Namespace) -> int:
    from pipelines.settings import SettingsError

    if (a.spec is None) == (a.image is None):
        _err("give either MODEL@VERSION / MODEL@ALIAS (e.g. ssl-encoder@champion) or --image PATH|SHA256, not "
             + ("both" if a.spec else "neither"))
        return 2
    try:
        return _lineage(a)
    except (LineageInputError, SettingsError) as e:
        _err(str(e))
        return 2


def _lineage(a: argparse.Namespace) -> int:
    from pipelines.settings import Settings

    # check every argument before anything is opened
    spec = parse_model_spec(a.spec) if a.spec is not None else None
    sid, file = image_sample_id(a.image) if a.image is not None else (None, None)
    s = Settings.from_env(home=a.home).with_config_file(a.config)
    if not s.home.root.is_dir():
        raise LineageInputError(f"no home at {s.home.root} (give --home DIR or set SSLPIPE_HOME)")
    tracking, client = _mlflow(s, required=spec is not None)

    from assets.model_lineage import image_lineage, model_lineage, resolve_version

    if spec is not None:
        resolve_version(client, *spec)  # unknown model, version or alias: exit 2 before the instance is opened
    instance = _dagster(s)

    if spec is not None:
        rec = model_lineage(s.home, tracking, client, instance, *spec)
        print(json.dumps(rec, indent=2) if a.json else "\n".join(model_text(rec)))
        return 0
    rec = image_lineage(s.home, tracking, client, instance, sid, a.image, file)
    print(json.dumps(rec, indent=2) if a.json else "\n".join(image_text(rec)))
    if not rec["found"] and a.json:
        _err(f"image {sid} is in no batch of {s.home.root} and not in its eval set")
    return 0 if rec["found"] else 1


def _mlflow(s, required: bool):
    """(MlflowTracking, client) of the home, or (tracking, None) when its SQLite store does not exist and it
    is not required (an image look-up in a home where nothing was registered): opening it would create it."""

    from pipelines.settings import resources_for

    tracking = resources_for(s)["mlflow"]
    uri = tracking.tracking_uri
    if tracking.missing_store() is not None:
        if required:
            raise LineageInputError(f"no MLflow store in {s.home.root} ({uri}): nothing is registered there yet")
        return tracking, None
    from assets.mlflow_tracking import quiet_mlflow

    with quiet_mlflow():
        return tracking, tracking.client()


def _dagster(s):
    """The home's Dagster instance, opened to read (no lock taken, nothing created), or None when the home
    has none."""
    import dagster as dg

    d = s.home.dagster_home
    if not (d / "dagster.yaml").is_file() or not (d / "history").is_dir():
        return None
    return dg.DagsterInstance.from_config(str(d))


# --- text ----------------------------------------------------------------------------------------------------

def _run_line(label: str, r: dict | None, index_note: bool = True) -> str:
    if r is None:
        return f"  {label}: none recorded"
    if index_note and r.get("writes_index_now") is False:
        label += (f" (NOT the index on disk now: that run wrote index digest {t(short(r.get('index_digest')))}; "
                  "the shards were rewritten outside this home's Dagster runs)")
    if not r.get("found"):
        return f"  {label}: {t(r['run_id'])} (not in this home's Dagster instance) {t(r['url'])}"
    return (f"  {label}: {t(r['run_id'])} ({t(r['status'])}, job {t(r['job'])}, ended {t(r.get('ended') or '-')}) "
            f"{t(r['url'])}")


def model_text(rec: dict) -> list[str]:
    al = ", ".join(map(t, rec["aliases"])) or "none"
    out = [f"{t(rec['model'])} version {t(rec['version'])} (aliases: {al}; asked for {t(rec['requested'])})",
           f"  model version: {t(rec['model_version_url'])}",
           f"  method: {t(rec['method'])} / {t(rec['backbone'])}; training run key {t(rec['run_key'])}",
           f"  code version (git sha): {t(rec['git_sha'])}",
           f"  contract versions: {', '.join(map(t, rec['contract_versions'])) or 'none recorded'}",
           f"  eval set digest: {t(rec['eval_digest'])}"]
    m = rec["mlflow_run"]
    if m is None:
        out.append("  MLflow run: none")
    elif not m["found"]:
        out.append(f"  MLflow run: {t(m['run_id'])} (not in this store)")
    else:
        out.append(f"  MLflow run: {t(m['run_id'])} ({t(m['status'])}) {t(m['url'])}")
    d = rec["dagster"]
    out.append(_run_line("registered by Dagster run", d["registration_run"]))
    out.append(_run_line("trained by Dagster run", d["training_run"]))
    changed = [b["batch"] for b in rec["batches"] if b["status"] != "unchanged"]
    out.append(f"batches ({len(rec['batches'])}): "
               + ("every batch's shards are the ones it trained on" if not changed else
                  f"{len(changed)} CHANGED SINCE TRAINING: {', '.join(map(t, changed))}"))
    for b in rec["batches"]:
        out += _batch_text(b)
    if rec["shard_digests_at_training_from"] is None:
        out.append("  (per-shard sha256 at training not found: neither models/<key>/result.json nor the MLflow "
                   "run's training/result.json; compared by index digest only)")
    r = rec["review"]
    st = r["state"] or {}
    out.append("review:")
    out.append(f"  state: {t(st.get('status', 'none'))} (reviewer {t(st.get('reviewer') or 'none')}, "
               f"{t(st.get('time') or '-')}): {t(st.get('reason') or '')}")
    if r["gate"]:
        verdict, summary = ("passed" if r["gate"].get("passed") else "failed"), r["gate"].get("summary", "")
        out.append(f"  gate: {t(summary if summary.startswith(verdict) else f'{verdict}: {summary}')}")
    out.append(f"  alias history of this version ({len(r['alias_history'])}):")
    for h in r["alias_history"]:
        out.append(f"    {t(h.get('time'))} {t(h.get('alias'))}: {t(h.get('from_version') or 'none')} -> "
                   f"{t(h.get('to_version') or 'none')} ({t(h.get('action'))}, reviewer "
                   f"{t(h.get('reviewer') or 'none')}, Dagster run {t(h.get('dagster_run_id') or 'none')}): "
                   f"{t(h.get('reason'))}")
    return out


def _batch_text(b: dict) -> list[str]:
    name = t(b["batch"])
    if b["status"] == "unchanged":
        head = f"  {name}: shards unchanged since training (index digest {t(b['index_digest_now'])})"
    elif b["status"] == "resharded":
        head = (f"  {name}: RE-SHARDED SINCE TRAINING: index digest then {t(b['index_digest_at_training'])}, now "
                f"{t(b['index_digest_now'])}; the shards below are not the bytes this model learned from")
    elif b["status"] == "no_index":
        head = (f"  {name}: NO SHARD INDEX NOW at {t(b['index'])} (removed since training; digest then "
                f"{t(b['index_digest_at_training'])})")
    else:
        head = f"  {name}: index digest now {t(b['index_digest_now'])} (none recorded by the version)"
    out = [head]
    for s in b["shards"]:
        same = {True: "same as at training", False: f"DIFFERS from {t(short(s['sha256_at_training']))} at training",
                None: "not recorded at training"}[s["same_as_training"]]
        out.append(f"    {t(s['name'])}: {s['samples']} samples, {s['bytes']} bytes, sha256 {t(s['sha256'])} "
                   f"({same}; file {t(s.get('file', '?'))})")
    for s in b["shards_gone_since_training"]:
        out.append(f"    {t(s['name'])}: trained on (sha256 {t(s['sha256'])}), NO LONGER IN THE INDEX")
    if b["excluded_eval_copies"]:
        out.append(f"    {b['excluded_eval_copies']} accepted image(s) left out of the shards as copies of eval images")
    mu = {True: "unchanged", False: "CHANGED since training", None: "cannot compare"}[b["manifest_unchanged"]]
    out.append(f"    manifest digest {t(b['manifest_digest_at_training'] or 'not recorded')} ({mu}) "
               f"{t(b['manifest'])}")
    runs = b["image_shards_runs"]
    out.append(_run_line("  image_shards last materialized by run", runs["last"])
               + (f" at {t(runs['last']['materialized'])}" if runs["last"] else ""))
    if runs.get("recorded"):
        out.append(_run_line("  the sharding it trained on was materialized by run", runs["recorded"], index_note=False)
                   + f" at {t(runs['recorded']['materialized'])}")
    return out


def image_text(rec: dict) -> list[str]:
    src = f" (file {t(rec['file'])})" if rec["file"] else ""
    out = [f"image {t(rec['sample_id'])}{src}"]
    if not rec["found"]:
        out.append(f"  in no batch of {t(rec['home'])} ({rec['batches_searched']} batch(es) searched) and not in "
                   "its eval set: no model trained on it")
        return out
    for a in rec["accepted"]:
        out.append(f"  accepted in batch {t(a['batch'])}: {t(a['path'])}")
        out.append(f"    landing file: {t(a['landing_path'])}" + ("" if a["landing_file_present"] else " (NOT THERE NOW)"))
        attrs = ", ".join(f"{t(k)}={t(v)}" for k, v in sorted(a["attributes"].items())) or "none"
        out.append(f"    {t(a['format'])} {a['width']}x{a['height']} {t(a['mode'])}, {a['bytes']} bytes; "
                   f"attributes: {attrs}")
        if a["excluded"]:
            e = a["excluded"]
            out.append(f"    LEFT OUT OF THE SHARDS: {t(e.get('reason'))}, a copy of eval image "
                       f"{t(e.get('matches'))} ({t(e.get('bits'))} pHash bits)")
        elif a["shard"]:
            out.append(f"    in shard {t(a['shard_path'])} as {', '.join(map(t, a['members']))}")
        elif not a["sharded"]:
            out.append("    the batch has no shards (image_shards has not run for it, or its checks failed)")
        else:
            out.append("    NOT IN ANY SHARD of the batch's index (run sslpipe verify on this batch)")
        if a["image_shards_run"]:
            out.append(_run_line("  sharded by Dagster run", a["image_shards_run"]))
        if not a["models"]:
            out.append("    no registered model version trained on this batch")
        for m in a["models"]:
            al = f" [{', '.join(map(t, m['aliases']))}]" if m["aliases"] else ""
            verdict = {"yes": "trained on it (certain)", "no": "did not train on it",
                       "earlier_sharding": "PROBABLY trained on it (not certain)"}[m["trained_on_it"]]
            out.append(f"    {t(m['model'])}@{t(m['version'])}{al}: {verdict}: {t(m['why'])}")
    for q in rec["quarantined"]:
        dup = f" (duplicate of {t(q['duplicate_of'])})" if q.get("duplicate_of") else ""
        out.append(f"  quarantined in batch {t(q['batch'])}: {t(q['path'])}: {t(q['reason'])}{dup}: {t(q['detail'])}")
        out.append(f"    landing file: {t(q['landing_path'])}")
    ev = rec["eval"]
    for e in ev["accepted"]:
        attrs = ", ".join(f"{t(k)}={t(v)}" for k, v in sorted(e["attributes"].items()))
        out.append(f"  IN THE EVAL SET: {t(e['landing_path'])} ({attrs}); never in a training shard")
    if ev["accepted"]:
        used = ", ".join(f"{t(m['model'])}@{t(m['version'])}" for m in ev["evaluated_by"]) or "none"
        out.append(f"    evaluated with the current eval set: {used}")
    for e in ev["quarantined"]:
        out.append(f"  quarantined from the eval set: {t(e['path'])}: {t(e['reason'])}: {t(e['detail'])}")
    models = ", ".join(f"{t(m['model'])}@{t(m['version'])}" for m in rec["models"]) or "none"
    out.append(f"models that trained on it: {models} ({rec['models_searched']} registered version(s) searched)")
    return out
