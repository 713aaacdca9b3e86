"""The review decisions on a registered model, and what `sslpipe review` reads: gathered from MLflow and the
home, decided against the registry's state, recorded in MLflow (alias history, review state) and in Dagster
(an AssetObservation of `registered_model`), so that both UIs tell the same story.

    facts = gather(reg, home, version=None)                      # -> the dicts ssl_ops.review.compare reads
    rec = approve(reg, instance, "3", reviewer="ana", reason="better on every group", force=False)
    rec = reject(reg, instance, "4", reviewer="ana", reason="drift in batch b7")
    rec = rollback(reg, instance, to=None, reviewer="ana", reason="complaints from the field")

Refusals raise Refused (the registry's state forbids it: exit 1) or BadArguments (unknown model or version, a
bad reviewer name, an empty reason: exit 2), and change nothing. Every refusal is decided before the first
write.
"""

from __future__ import annotations

import json
import tempfile
import unicodedata
from pathlib import Path

import dagster as dg

from assets.mlflow_registry import GATE_TAG, REVIEW_TAG, RUN_KEY_TAG, Registry
from assets.mlflow_tracking import quiet_mlflow
from ssl_ops.home import Home

REVIEW_ASSET = "registered_model"  # the asset whose observations carry the review decisions
PLOT_ARTIFACTS = ("plots/accuracy_vs_label_fraction.png", "plots/eval_embeddings_2d.png", "plots/training_curves.png")


class ReviewError(Exception):
    exit_code = 2


class BadArguments(ReviewError):
    """Unknown model or version, bad reviewer name, empty reason: exit 2."""
    exit_code = 2


class Refused(ReviewError):
    """The registry's state forbids the decision (nothing was changed): exit 1."""
    exit_code = 1


# ------------------------------------------------------------------------------------------- arguments
def check_reviewer(name: str | None) -> str:
    """A reviewer name as given, or BadArguments: empty, or holding control, format (bidi, zero-width) or
    line-separator characters. Refused, never silently cleaned: the record must say who, exactly."""
    if name is None or not name.strip():
        raise BadArguments("the reviewer name is empty; give --reviewer NAME")
    bad = sorted({c for c in name if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp")})
    if bad:  # the message holds the name as given: whoever prints it escapes it (ssl_ops.escape.terminal)
        raise BadArguments(f"the reviewer name '{name}' holds control or format characters "
                           f"({', '.join(f'U+{ord(c):04X}' for c in bad)}); give a plain name with --reviewer")
    if len(name) > 200:
        raise BadArguments(f"the reviewer name is {len(name)} characters long; at most 200")
    return name


def check_reason(reason: str | None) -> str:
    if reason is None or not reason.strip():
        raise BadArguments("the reason is empty; say why with --reason TEXT (it is recorded with the decision)")
    return reason.strip()


def parse_model_version(spec: str) -> tuple[str, str]:
    """'ssl-encoder@3' -> ('ssl-encoder', '3'); BadArguments when it is not MODEL@VERSION. The one parser of
    model specs (ssl_ops.lineage_index.parse_model_spec), which also takes MODEL@ALIAS; decisions need a version."""
    from ssl_ops.lineage_index import LineageInputError, parse_model_spec

    try:
        model, ref = parse_model_spec(spec)
    except LineageInputError:
        raise BadArguments(f"{spec!r} is not MODEL@VERSION (e.g. ssl-encoder@3)") from None
    if not ref.isdigit():
        raise BadArguments(f"{spec!r} is not MODEL@VERSION (e.g. ssl-encoder@3): a decision names the version, "
                           f"not an alias")
    return model, ref


def require_model(reg: Registry) -> None:
    if not reg.exists():
        names = sorted(m.name for m in reg.client.search_registered_models())
        raise BadArguments(f"no registered model {reg.name!r} in this MLflow store; it holds "
                           + (", ".join(repr(n) for n in names) if names else "no models yet (run the graph first)"))


def require_version(reg: Registry, version: str):
    mv = reg.get_version(version)
    if mv is None:
        known = sorted((int(v.version) for v in reg.client.search_model_versions(f"name = '{reg.name}'")))
        raise BadArguments(f"{reg.name!r} has no version {version!r}; its versions: "
                           + (", ".join(map(str, known)) or "none"))
    return mv


# ------------------------------------------------------------------------------------------- gathering
def _json_tag(tags: dict, key: str) -> dict | None:
    try:
        return json.loads(tags[key]) if key in tags else None
    except ValueError:
        return {"unreadable": tags[key][:200]}


def version_facts(reg: Registry, mv, role: str | None, with_plots: bool = False) -> dict:
    """What review shows of one version: its tags (gate, review state, batches, lineage) and its run's
    evaluation/probe_report.json (None when absent); with_plots: the run's plot PNGs as [(caption, bytes)]."""
    tags = mv.tags
    facts = {"version": str(mv.version), "aliases": sorted(getattr(mv, "aliases", []) or []), "role": role,
             "gate": _json_tag(tags, GATE_TAG), "review": _json_tag(tags, REVIEW_TAG),
             "batches": [b for b in tags.get("sslpipe.batches", "").split(",") if b],
             "method": tags.get("sslpipe.method"), "backbone": tags.get("sslpipe.backbone"),
             "run_id": mv.run_id, "run_key": tags.get(RUN_KEY_TAG), "git_sha": tags.get("sslpipe.git_sha"),
             "created": mv.creation_timestamp, "report": None, "plots": []}
    if not mv.run_id:
        return facts
    with tempfile.TemporaryDirectory(prefix="sslpipe-review-") as tmp, quiet_mlflow():
        try:
            p = reg.client.download_artifacts(mv.run_id, "evaluation/probe_report.json", tmp)
            facts["report"] = json.loads(Path(p).read_text())
        except Exception:  # noqa: BLE001 - no report logged (or an unreadable one): review says so
            facts["report"] = None
        if with_plots:
            for art in PLOT_ARTIFACTS:
                try:
                    p = reg.client.download_artifacts(mv.run_id, art, tmp)
                    facts["plots"].append((f"version {mv.version}: {Path(art).stem.replace('_', ' ')}",
                                           Path(p).read_bytes()))
                except Exception:  # noqa: BLE001 - a version registered without plots
                    continue
    return facts


def bias_of_new_batches(home: Home, subject: dict | None, champion: dict | None) -> dict[str, dict | None]:
    """bias.json of each batch the subject trained on and the champion did not (None: not in this home)."""
    if subject is None:
        return {}
    old = set(champion["batches"]) if champion else set()
    out = {}
    for b in subject["batches"]:
        if b in old:
            continue
        p = home.report_dir(b) / "bias.json" if _safe_batch(b) else None
        try:
            out[b] = json.loads(p.read_text()) if p is not None and p.is_file() else None
        except ValueError:
            out[b] = None
    return out


def _safe_batch(b: str) -> bool:
    """A batch name from a tag is a folder name under reports/: never a path that leaves it."""
    return b not in ("", ".", "..") and "/" not in b and "\\" not in b and "\x00" not in b


def gather(reg: Registry, home: Home, version: str | None = None, with_plots: bool = False) -> dict:
    """-> {subject, champion, bias, history, notes}: the subject is `version`, or else the candidate (None when
    there is none); the champion is the version with that alias."""
    require_model(reg)
    champ_mv = reg.alias("champion")
    notes = []
    if version is not None:
        mv = require_version(reg, version)
        role = ", ".join(sorted(getattr(mv, "aliases", []) or [])) or "version"
    else:
        mv = reg.alias("candidate")
        role = "candidate"
    if mv is not None and champ_mv is not None and str(mv.version) == str(champ_mv.version):
        subject, champion = None, version_facts(reg, champ_mv, "champion", with_plots)
        notes.append(f"version {mv.version} is the champion; shown alone")
    else:
        subject = version_facts(reg, mv, role, with_plots) if mv is not None else None
        champion = version_facts(reg, champ_mv, "champion", with_plots) if champ_mv is not None else None
    if subject is not None and subject["report"] is not None and champion is not None:
        pv = subject["report"].get("champion_version")
        if pv != champion["version"]:
            notes.append(f"its gate compared it with {'version ' + pv if pv else 'the baselines (no champion then)'}; "
                         f"the champion now is version {champion['version']}")
    if subject is None and champion is None:
        latest = reg.client.search_model_versions(f"name = '{reg.name}'")
        if latest:
            notes.append(f"{len(latest)} version(s) registered, none passed its gate or was approved; look at one "
                         f"with --version {max(int(v.version) for v in latest)}")
    return {"subject": subject, "champion": champion, "bias": bias_of_new_batches(home, subject, champion),
            "history": reg.history(), "notes": notes}


# ------------------------------------------------------------------------------------------- decisions
def _status(mv) -> str | None:
    return (_json_tag(mv.tags, REVIEW_TAG) or {}).get("status")


def _champion_version(reg: Registry) -> str | None:
    c = reg.alias("champion")
    return str(c.version) if c else None


def approve(reg: Registry, instance: dg.DagsterInstance | None, version: str, reviewer: str, reason: str,
            force: bool = False) -> dict:
    reviewer, reason = check_reviewer(reviewer), check_reason(reason)
    require_model(reg)
    mv = require_version(reg, version)
    champ = _champion_version(reg)
    if champ == str(version):
        raise Refused(f"version {version} is already the champion of {reg.name!r}; nothing changed")
    if GATE_TAG not in mv.tags:
        raise Refused(f"version {version} did not finish registering (no gate decision recorded); run the graph "
                      "again to finish it")
    gate = _json_tag(mv.tags, GATE_TAG) or {}
    status = _status(mv)
    forced = False
    if not gate.get("passed"):
        if not force:
            raise Refused(f"version {version} failed its gate ({gate.get('summary', '?')}); approving it needs "
                          f"--force, and the approval is recorded as forced")
        forced = True
    if status == "rejected":
        state = _json_tag(mv.tags, REVIEW_TAG)
        if not force:
            raise Refused(f"version {version} was rejected by {state.get('reviewer')} at {state.get('time')} "
                          f"({state.get('reason')}); approving it needs --force")
        forced = True
    rec = reg.approve(str(version), reviewer, reason, forced=forced)
    return _observe(instance, "approve", reg.name, str(version), rec["from_version"], rec["to_version"], reviewer,
                    reason, rec["time"], forced=forced, gate_passed=bool(gate.get("passed")))


def reject(reg: Registry, instance: dg.DagsterInstance | None, version: str, reviewer: str, reason: str) -> dict:
    reviewer, reason = check_reviewer(reviewer), check_reason(reason)
    require_model(reg)
    mv = require_version(reg, version)
    if _champion_version(reg) == str(version):
        raise Refused(f"version {version} is the champion of {reg.name!r}; a champion is not rejected, it is "
                      f"replaced: use `sslpipe rollback {reg.name}` (or approve another version)")
    if _status(mv) == "rejected":
        raise Refused(f"version {version} is already rejected; nothing changed")
    rec = reg.reject(str(version), reviewer, reason)
    return _observe(instance, "reject", reg.name, str(version), rec.get("from_version"), None, reviewer, reason,
                    rec["time"], alias="candidate")


def rollback(reg: Registry, instance: dg.DagsterInstance | None, to: str | None, reviewer: str, reason: str) -> dict:
    reviewer, reason = check_reviewer(reviewer), check_reason(reason)
    require_model(reg)
    if to is not None:
        require_version(reg, to)
    champ = _champion_version(reg)
    if champ is None:
        raise Refused(f"{reg.name!r} has no champion to roll back")
    if to is None:
        to = reg.previous_champion()
        if to is None:
            raise Refused(f"no earlier champion to roll back to: version {champ} is the first champion of "
                          f"{reg.name!r} in the alias history that was not rolled back from or rejected since "
                          "(name one with --to)")
    else:
        to = str(int(to))
        if to == champ:
            raise Refused(f"version {to} is already the champion; nothing changed")
        earlier = {h.get("to_version") for h in reg.history() if h.get("alias") == "champion"}
        if to not in earlier:
            raise Refused(f"version {to} was never the champion of {reg.name!r}; a rollback goes back to an earlier "
                          f"champion (to make it champion, review it and use sslpipe approve {reg.name}@{to})")
        if _status(reg.get_version(to)) == "rejected":
            raise Refused(f"version {to} was rejected since it was champion; approve it with --force instead")
    rec = reg.rollback(to, reviewer, reason)
    return _observe(instance, "rollback", reg.name, to, rec["from_version"], rec["to_version"], reviewer, reason,
                    rec["time"])


def _observe(instance: dg.DagsterInstance | None, action: str, model: str, version: str, frm: str | None,
             to: str | None, reviewer: str, reason: str, when: str, **extra) -> dict:
    """The decision's record, also reported to Dagster as an AssetObservation of `registered_model` (shown
    on the asset's page beside its materializations)."""
    record = {"action": action, "model": model, "version": version, "from": frm, "to": to, "reviewer": reviewer,
              "reason": reason, "time": when, **extra}
    if instance is not None:
        md = {k: (v if isinstance(v, (bool, int, float)) else ("none" if v is None else str(v)))
              for k, v in record.items()}
        instance.report_runless_asset_event(dg.AssetObservation(
            asset_key=REVIEW_ASSET, metadata=md,
            description=f"{action} {model} version {version} by {reviewer}"[:500]))
    return record


def observations(instance: dg.DagsterInstance, limit: int = 20) -> list[dict]:
    """The review decisions recorded in Dagster, newest first, as plain dicts."""
    recs = instance.fetch_observations(dg.AssetKey(REVIEW_ASSET), limit=limit).records
    return [{k: v.value for k, v in r.asset_observation.metadata.items()} for r in recs]
