"""What `sslpipe review` shows: a version (the candidate) beside the champion, as one plain dict (rendered for a
terminal and as HTML by ssl_ops.review.render). Pure: plain dicts in, a plain dict out.

    cmp = build_comparison("ssl-encoder", subject, champion, bias={"b3": bias_json}, history=[...],
                           commands={"approve": "sslpipe approve ssl-encoder@3 --reason ..."})

`subject` and `champion` are the versions' facts as the assets gather them from MLflow:
{version, aliases, role, gate (the sslpipe.gate tag), review (sslpipe.review), batches, method, backbone,
run_id, run_key, report (the run's evaluation/probe_report.json, or None)}. `bias` maps each batch the subject
trained on and the champion did not to its `reports/<batch>/bias.json` (None when the home has none).

Probes: the subject's probe report holds the champion's figures on the same split when the champion it was
probed against is still the champion; then the differences (subject - champion) get a paired bootstrap 95%
interval (ssl_ops.probes.stats). Otherwise the champion's row comes from its own probe run, and a note says
that the two were not measured together.
"""

from __future__ import annotations

from dataclasses import asdict

from ssl_ops.probes.stats import paired_bootstrap_ci
from ssl_ops.review.card import interval_note
from ssl_ops.review.gate import GateConfig, group_judgements, verdict

METRICS = (("knn20", "kNN k=20"), ("knn200", "kNN k=200"), ("linear", "linear"))
BASELINES = (("raw_pixels", "raw pixels"), ("random_init", "random init (same architecture)"))


# ---------------------------------------------------------------------------------------------------- the dict
def _table(t: dict | None) -> dict | None:
    """A probe table less its per-row 0/1 arrays: the figures a reviewer reads."""
    if t is None:
        return None
    return {"knn20": t["knn20"], "knn20_ci": list(t["knn20_ci"]), "knn200": t["knn200"],
            "knn200_ci": list(t["knn200_ci"]), "linear": t["linear"], "linear_ci": list(t["linear_ci"]),
            "label_fractions": {f: {"mean": v["mean"], "std": v["std"], "draws": v["draws"]}
                                for f, v in t.get("label_fractions", {}).items()},
            "n_test": t.get("n_test")}


def _row(key: str, label: str, t: dict | None, version: str | None = None) -> dict | None:
    tab = _table(t)
    return None if tab is None else {"key": key, "label": label, "version": version, **tab}


def _groups(rep: dict, theirs: dict | None, same_split: bool, cfg: GateConfig) -> list[dict]:
    """Per group column: each value's n and accuracy beside the baselines and the champion; on the same split, the
    paired difference against the champion with its interval, judged as the gate judges it (gate.group_judgements)."""
    mine = rep["model"]
    judged = group_judgements({"model": mine, "champion": theirs if same_split else None,
                               "raw_pixels": rep.get("raw_pixels"), "random_init": rep.get("random_init")}, cfg)
    out = []
    for col, g in (mine.get("groups") or {}).items():
        champ = ((theirs or {}).get("groups") or {}).get(col) or {}
        cper = champ.get("per_group", {})
        out.append({"column": col, "worst_group": g.get("worst_group"), "worst_group_gap": g.get("worst_group_gap"),
                    "champion_worst_group": champ.get("worst_group"),
                    "champion_worst_group_gap": champ.get("worst_group_gap"),
                    "values": [{"value": r["value"], "n": r["n"], "accuracy": r["accuracy"],
                                "champion_accuracy": cper[r["value"]]["accuracy"] if r["value"] in cper else None,
                                "raw_pixels": r["raw_pixels"], "random_init": r["random_init"],
                                "delta": r["delta"] if same_split else None, "ci": r["ci"] if same_split else None,
                                "too_small": r["n"] < cfg.min_group_size,
                                "judgement": ("too small to judge" if r["n"] < cfg.min_group_size else
                                              "lost" if r["regressed"] else "ok" if r["judged"] else None)}
                               for r in judged if r["column"] == col]})
    return out


def gate_config(gate: dict | None) -> tuple[GateConfig, bool]:
    """The GateConfig a version's gate was decided with (its sslpipe.gate tag's config), or the defaults: ->
    (config, recorded)."""
    rec = (gate or {}).get("config")
    if isinstance(rec, dict):
        try:
            return GateConfig(**{k: v for k, v in rec.items() if k in GateConfig.__dataclass_fields__}), True
        except (TypeError, ValueError):
            pass
    return GateConfig(), False


def bias_summary(batch: str, d: dict | None) -> dict:
    """A batch's bias.json (ssl_ops.bias.BiasReport.to_dict) cut to what a reviewer reads: group shares, what
    drifted, near duplicates, flags and notes."""
    if d is None:
        return {"batch": batch, "found": False}
    nd = d.get("near_duplicates") or {}
    drifts = (d.get("attribute_drift") or []) + (d.get("image_drift") or [])
    return {"batch": batch, "found": True, "images": d.get("images"), "flags": d.get("flags", {}),
            "reference_batches": d.get("reference_batches", []),
            "groups": [{"attribute": g["attribute"], "min_share": g["min_share"], "shares": g["shares"],
                        "counts": g["counts"], "under": g["under"], "flagged": g["flagged"]}
                       for g in d.get("groups") or []],
            "drift_measured": bool(drifts),
            "drifted": [{"feature": x["feature"], "psi": x["psi"], "test": x["test"], "p_value": x["p_value"]}
                        for x in drifts if x.get("drifted")],
            "drift_features": len(drifts),
            "near_duplicates": {k: nd.get(k) for k in ("max_bits", "cluster_count", "images_in_clusters", "share",
                                                       "cross_batch_count", "flagged", "flat_images")}
                               | {"examples": [c[:4] for c in (nd.get("clusters") or [])[:3]],
                                  "cross_examples": (nd.get("cross_batch") or [])[:3]},
            "notes": d.get("notes", []),
            "unchecked": [{k: u.get(k) for k in ("attribute", "distinct", "shares", "other_values", "other_share")}
                          for u in d.get("unchecked") or []]}


def build_comparison(model: str, subject: dict | None, champion: dict | None, bias: dict[str, dict | None],
                     history: list[dict], commands: dict[str, str], notes: list[str] | None = None,
                     home: str | None = None) -> dict:
    """-> a JSON-serialisable dict: what `sslpipe review --json` prints, and what the renderers read."""
    notes = list(notes or [])
    cmp: dict = {"model": model, "home": home, "subject": None, "champion": None, "probes": [], "deltas": {},
                 "groups": [], "health": {}, "gate": None, "review": None, "new_batches": list(bias),
                 "bias": [bias_summary(b, d) for b, d in bias.items()], "history": history[-10:],
                 "commands": dict(commands), "notes": notes, "same_split": False}
    for key, facts in (("subject", subject), ("champion", champion)):
        if facts is not None:
            cmp[key] = {k: facts.get(k) for k in ("version", "aliases", "role", "gate", "review", "batches", "method",
                                                  "backbone", "run_id", "run_key", "git_sha", "created")}
            cmp[key]["has_report"] = facts.get("report") is not None
    main = subject or champion
    if main is None:
        return cmp
    rep = main.get("report")
    cv = champion["version"] if champion else None
    if subject is not None:
        cmp["gate"], cmp["review"] = subject.get("gate"), subject.get("review")
    cfg, recorded = gate_config(subject.get("gate") if subject is not None else None)
    cmp["gate_config"] = {**asdict(cfg), "recorded": recorded}
    cmp["interval_note"] = interval_note(asdict(cfg)) + ("" if recorded else " (The gate's settings were not recorded "
                                                                              "with this version: the defaults are shown.)")
    if rep is None:
        notes.append(f"version {main['version']} has no evaluation/probe_report.json in its run: no probe figures")
        return cmp
    label = f"version {main['version']}" + (f" ({main['role']})" if main.get("role") else "")
    rows = [_row("subject" if subject else "champion", label, rep["model"], main["version"])]
    champ_table = None
    if subject is not None and champion is not None:
        probed_against = rep.get("champion_version")
        if rep.get("champion") is not None and probed_against == cv:
            champ_table = rep["champion"]
            cmp["same_split"] = True
            rows.append(_row("champion", f"version {cv} (champion, same split)", champ_table, cv))
            for m, _ in METRICS:
                a, b = rep["model"].get("correct", {}).get(m), champ_table.get("correct", {}).get(m)
                if a is not None and b is not None and len(a) == len(b):
                    lo, hi = paired_bootstrap_ci(a, b)
                    cmp["deltas"][m] = {"delta": rep["model"][m] - champ_table[m], "ci": [lo, hi],
                                        "verdict": verdict((lo, hi), cfg)}
        else:
            crep = champion.get("report")
            if crep is not None:
                champ_table = crep["model"]
                rows.append(_row("champion", f"version {cv} (champion, its own probe run)", champ_table, cv))
            notes.append(f"version {main['version']} was probed against "
                         f"{'version ' + str(probed_against) if probed_against else 'no champion'}, not against "
                         f"the champion now (version {cv}); the champion's row is from its own probe run, so the "
                         "two were not measured on the same split together and no paired difference is shown")
    rows += [_row(k, lab, rep.get(k)) for k, lab in BASELINES]
    cmp["probes"] = [r for r in rows if r is not None]
    cmp["groups"] = _groups(rep, champ_table, cmp["same_split"], cfg)
    cmp["health"] = {"subject" if subject else "champion": rep.get("health")}
    if subject is not None and champion is not None and champion.get("report") is not None:
        cmp["health"]["champion"] = champion["report"].get("health")
    cmp["split"] = rep.get("split")
    cmp["classes"] = len(rep.get("classes", []))
    return cmp
