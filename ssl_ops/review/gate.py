"""The champion/challenger gate: may this encoder (the challenger) replace the champion?

    decision = decide(report, GateConfig(), method="simclr", leakage=(True, "no eval image in a shard"))
    decision.passed, decision.summary, decision.checks

Every check is recorded with its figures, passed or not:
- leakage: the eval set's leakage check passed on the shards this encoder trained on (the caller's finding);
- collapse: the std of the L2-normalised embeddings (x sqrt(D)) is at least `min_embedding_std`;
- baselines, for every candidate (with or without a champion): the primary metric beats both baselines, raw
  pixels and a randomly initialised encoder of the same architecture, on the same split (its failure names
  the baseline that was not beaten);
- with a champion, probed on the same split (ssl_ops.probes.report: each encoder at its own input size):
  - primary_metric: the paired bootstrap 95% interval [lo, hi] of (challenger - champion) covers test-row
    sampling only, not training-seed variance (the same config trained with another seed lands elsewhere);
    `seed_margin` covers that, as measured by bench/seed_spread.py. So:
      improvement   lo > +seed_margin                     (better beyond both kinds of noise)
      regression    hi < -(seed_margin + tolerance)       (worse beyond both, and beyond what you accept)
      no clear difference   otherwise: a loss within the margin is not a regression, a gain within it is
                            not an improvement;
    the check fails on a regression only: a challenger no worse than the champion may replace it;
  - groups: each group (e.g. PACS domain) with at least `min_group_size` test images is judged by the paired
    interval of its own rows: it regresses when the interval lies wholly below -group_tolerance; smaller groups
    are listed "too small to judge" in the check's detail and the notes, never silently passed.
MAE-style encoders are judged on the linear probe whatever the primary metric says (their kNN is known to be
poor).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ssl_ops.probes.stats import paired_bootstrap_ci, per_group_paired_ci

PRIMARY_METRICS = ("linear", "knn20", "knn200")
LINEAR_ONLY_METHODS = ("mae",)


# bench/seed_spread.py, 3 training seeds of the default each, one fixed probe split (2 cores, 2026-11-29/30):
# - PACS, every 2nd image (3,246 to train on, 525 test images), the no-config default (10 minutes, ResNet-10,
#   bf16): linear probe max-min 5.0 points (std 2.8; 2 of 3 pairs "significantly" different by the paired
#   interval alone), kNN k=20 and k=200 2.9 each;
# - the demo's digits at its full recipe (600 steps, fp32, 179 test digits): linear 1.1, kNN k=20 1.7, k=200 2.2.
# The margin covers the largest of these, PACS's linear spread.
SEED_MARGIN = 0.05
SEED_SPREAD_NOTE = "measured by bench/seed_spread.py"
VERDICTS = ("improvement", "no clear difference", "regression")


@dataclass(frozen=True)
class GateConfig:
    primary_metric: str = "linear"  # one of PRIMARY_METRICS
    seed_margin: float = SEED_MARGIN  # accuracy two trainings of one config differ by from the seed alone
    tolerance: float = 0.0  # accuracy the challenger may lose beyond the interval and the seed margin
    group_tolerance: float = 0.05  # accuracy a group may lose against the champion, beyond its interval
    min_group_size: int = 30  # test images a group needs to be judged; smaller ones are reported, not judged
    min_embedding_std: float = 0.1  # below: collapsed (a healthy encoder is near 1)

    def __post_init__(self):
        if self.primary_metric not in PRIMARY_METRICS:
            raise ValueError(f"gate primary_metric {self.primary_metric!r} is not one of {PRIMARY_METRICS}")
        for k in ("seed_margin", "tolerance", "group_tolerance", "min_embedding_std"):
            v = getattr(self, k)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v <= 1:  # accuracies, std: 0..1
                raise ValueError(f"gate {k} must be a number from 0 to 1, got {v!r}")
        v = self.min_group_size
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"gate min_group_size must be a whole number of test images >= 1, got {v!r}")


def verdict(ci, cfg: GateConfig) -> str:
    """The paired interval of (challenger - champion) read against the seed margin: one of VERDICTS."""
    lo, hi = ci
    if lo > cfg.seed_margin:
        return "improvement"
    if hi < -(cfg.seed_margin + cfg.tolerance):
        return "regression"
    return "no clear difference"


def group_judgements(report: dict, cfg: GateConfig) -> list[dict]:
    """Each group of each group column of the model's linear probe, against the champion on the same test rows
    (when the report has one) and beside the baselines: {column, value, n, accuracy, champion, raw_pixels,
    random_init, delta, ci, judged, regressed}. judged: False for groups under min_group_size (too small to
    judge) or without a champion; regressed: the paired interval lies wholly below -group_tolerance."""
    model, champ = report["model"], report.get("champion")
    out = []
    for col, g in model.get("groups", {}).items():
        base = {b: (report.get(b) or {}).get("groups", {}).get(col, {}).get("per_group", {})
                for b in ("raw_pixels", "random_init")}
        theirs = (champ or {}).get("groups", {}).get(col)
        paired = {}
        if theirs is not None and g.get("test_values") is not None:
            paired = per_group_paired_ci(model["correct"]["linear"], champ["correct"]["linear"], g["test_values"])
        for value, acc in g["per_group"].items():
            row = {"column": col, "value": value, "n": acc["n"], "accuracy": acc["accuracy"],
                   "champion": (theirs or {}).get("per_group", {}).get(value, {}).get("accuracy"),
                   **{b: base[b].get(value, {}).get("accuracy") for b in base},
                   "delta": None, "ci": None, "judged": False, "regressed": False}
            if value in paired:
                row["delta"], row["ci"] = paired[value]["delta"], paired[value]["ci"]
            elif row["champion"] is not None:  # a report without per-row groups: the point estimate only
                row["delta"] = acc["accuracy"] - row["champion"]
            if row["delta"] is not None and acc["n"] >= cfg.min_group_size:
                row["judged"] = True
                upper = row["ci"][1] if row["ci"] is not None else row["delta"]
                row["regressed"] = upper < -cfg.group_tolerance
            out.append(row)
    return out


@dataclass
class GateDecision:
    passed: bool
    metric: str
    against: str  # "baselines" (first model) or "champion"
    checks: list[dict] = field(default_factory=list)  # {name, passed, detail}
    notes: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)  # the GateConfig it was decided with

    @property
    def failed(self) -> list[dict]:
        return [c for c in self.checks if not c["passed"]]

    @property
    def summary(self) -> str:
        if self.passed:
            pm = next((c for c in self.checks if c["name"] == "primary_metric"), None)
            lead = (f": {pm['verdict']} on {self.metric}, {100 * pm['delta']:+.1f} points "
                    f"[{100 * pm['delta_ci'][0]:+.1f}, {100 * pm['delta_ci'][1]:+.1f}]" if pm else "")
            return f"passed {', '.join(c['name'] for c in self.checks)} (against the {self.against}{lead})"
        return "failed: " + "; ".join(f"{c['name']}: {c['detail']}" for c in self.failed)

    def to_dict(self) -> dict:
        return {**asdict(self), "summary": self.summary}


def primary_metric_for(method: str, cfg: GateConfig) -> tuple[str, str | None]:
    if method in LINEAR_ONLY_METHODS and cfg.primary_metric != "linear":
        return "linear", (f"{method} is judged on the linear probe, not {cfg.primary_metric} "
                          f"(kNN on MAE features is known to be poor)")
    return cfg.primary_metric, None


def _pts(x: float) -> str:
    return f"{100 * x:+.1f}"


def decide(report: dict, cfg: GateConfig, method: str, leakage: tuple[bool, str]) -> GateDecision:
    metric, note = primary_metric_for(method, cfg)
    model = report["model"]
    champ = report.get("champion")
    d = GateDecision(passed=False, metric=metric, against="champion" if champ else "baselines",
                     notes=[note] if note else [], config=asdict(cfg))

    d.checks.append({"name": "leakage", "passed": bool(leakage[0]), "detail": leakage[1]})
    std = report["health"]["embedding_std"]
    d.checks.append({"name": "collapse", "passed": std >= cfg.min_embedding_std,
                     "detail": f"embedding std {std:.3f} {'>=' if std >= cfg.min_embedding_std else '<'} "
                               f"{cfg.min_embedding_std} (effective rank {report['health']['effective_rank']:.1f})"})
    raw, rnd = report["raw_pixels"][metric], report["random_init"][metric]
    beaten = [name for name, v in (("raw pixels", raw), ("random init", rnd)) if not model[metric] > v]
    d.checks.append({"name": "baselines", "passed": not beaten,
                     "detail": f"{metric} {model[metric]:.4f} vs raw pixels {raw:.4f} and random init {rnd:.4f}"
                               + (f": does not beat {' nor '.join(beaten)}; every new model must beat both baselines"
                                  f"{', with a champion in place too' if champ else ''}" if beaten else "")})
    if champ is not None:
        delta = model[metric] - champ[metric]
        lo, hi = paired_bootstrap_ci(model["correct"][metric], champ["correct"][metric])
        v = verdict((lo, hi), cfg)
        d.checks.append({"name": "primary_metric", "passed": v != "regression", "delta": delta, "delta_ci": [lo, hi],
                         "verdict": v,
                         "detail": f"{metric} {model[metric]:.4f} vs champion {champ[metric]:.4f}: {delta:+.4f} "
                                   f"(95% interval over test rows [{lo:+.4f}, {hi:+.4f}]); {v} against the seed margin "
                                   f"{cfg.seed_margin}" + (f" and tolerance {cfg.tolerance}" if cfg.tolerance else "")
                                   + {"improvement": f": the interval is wholly above +{cfg.seed_margin}",
                                      "regression": f": the interval is wholly below "
                                                    f"-{round(cfg.seed_margin + cfg.tolerance, 6)}",
                                      "no clear difference": ": within the noise of test rows and training seeds"}[v]})
        rows = group_judgements(report, cfg)
        if rows:
            lost = [r for r in rows if r["regressed"]]
            small = [r for r in rows if not r["judged"] and r["n"] < cfg.min_group_size]
            judged = sum(r["judged"] for r in rows)

            def ci(r):
                return f" [{_pts(r['ci'][0])}, {_pts(r['ci'][1])}]" if r["ci"] else ""

            detail = (f"lost more than {cfg.group_tolerance} (whole interval below): "
                      + ", ".join(f"{r['column']}={r['value']} {r['accuracy']:.3f} vs {r['champion']:.3f} "
                                  f"({_pts(r['delta'])} points{ci(r)}, n={r['n']})" for r in lost) if lost
                      else f"no group's interval lies wholly below -{cfg.group_tolerance} ({judged} judged)")
            if small:
                listing = ", ".join(f"{r['column']}={r['value']} (n={r['n']})" for r in small)
                detail += f"; too small to judge (under {cfg.min_group_size} test images): {listing}"
                d.notes.append(f"{len(small)} group(s) too small to judge (under {cfg.min_group_size} test images), "
                               f"not checked: {listing}")
            d.checks.append({"name": "groups", "passed": not lost, "detail": detail})
    d.passed = all(c["passed"] for c in d.checks)
    return d
