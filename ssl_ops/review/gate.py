"""The champion/challenger gate: may this encoder (the challenger) replace the champion?

    decision = decide(report, GateConfig(), method="simclr", leakage=(True, "no eval image in a shard"))
    decision.passed, decision.summary, decision.checks

Every check is recorded with its figures, passed or not:
- leakage: the eval set's leakage check passed on the shards this encoder trained on (the caller's finding);
- collapse: the std of the L2-normalised embeddings (x sqrt(D)) is at least `min_embedding_std`;
- with no champion (the first model): the primary metric beats both baselines, raw pixels and a randomly
  initialised encoder of the same architecture, on the same split;
- with a champion, probed on the same split:
  - primary metric: the challenger is not worse than the champion by more than `tolerance`, interval-aware:
    it fails only when the whole 95% paired-bootstrap interval of (challenger - champion) lies below
    -tolerance, i.e. when the regression is larger than the tolerance and not explained by the eval set's
    sampling noise;
  - groups: no group (e.g. PACS domain) loses more than `group_tolerance` of linear-probe accuracy.
MAE-style encoders are judged on the linear probe whatever the primary metric says (their kNN is known to be
poor).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ssl_ops.probes.stats import paired_bootstrap_ci

PRIMARY_METRICS = ("linear", "knn20", "knn200")
LINEAR_ONLY_METHODS = ("mae",)


@dataclass(frozen=True)
class GateConfig:
    primary_metric: str = "linear"  # one of PRIMARY_METRICS
    tolerance: float = 0.01  # accuracy the challenger may lose against the champion (beyond the interval)
    group_tolerance: float = 0.05  # accuracy any one group may lose against the champion
    min_embedding_std: float = 0.1  # below: collapsed (a healthy encoder is near 1)

    def __post_init__(self):
        if self.primary_metric not in PRIMARY_METRICS:
            raise ValueError(f"gate primary_metric {self.primary_metric!r} is not one of {PRIMARY_METRICS}")
        for k in ("tolerance", "group_tolerance", "min_embedding_std"):
            v = getattr(self, k)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v <= 1:  # accuracies, std: 0..1
                raise ValueError(f"gate {k} must be a number from 0 to 1, got {v!r}")


@dataclass
class GateDecision:
    passed: bool
    metric: str
    against: str  # "baselines" (first model) or "champion"
    checks: list[dict] = field(default_factory=list)  # {name, passed, detail}
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[dict]:
        return [c for c in self.checks if not c["passed"]]

    @property
    def summary(self) -> str:
        if self.passed:
            return f"passed {', '.join(c['name'] for c in self.checks)} (against the {self.against})"
        return "failed: " + "; ".join(f"{c['name']}: {c['detail']}" for c in self.failed)

    def to_dict(self) -> dict:
        return {**asdict(self), "summary": self.summary}


def primary_metric_for(method: str, cfg: GateConfig) -> tuple[str, str | None]:
    if method in LINEAR_ONLY_METHODS and cfg.primary_metric != "linear":
        return "linear", (f"{method} is judged on the linear probe, not {cfg.primary_metric} "
                          f"(kNN on MAE features is known to be poor)")
    return cfg.primary_metric, None


def decide(report: dict, cfg: GateConfig, method: str, leakage: tuple[bool, str]) -> GateDecision:
    metric, note = primary_metric_for(method, cfg)
    model = report["model"]
    champ = report.get("champion")
    d = GateDecision(passed=False, metric=metric, against="champion" if champ else "baselines",
                     notes=[note] if note else [])

    d.checks.append({"name": "leakage", "passed": bool(leakage[0]), "detail": leakage[1]})
    std = report["health"]["embedding_std"]
    d.checks.append({"name": "collapse", "passed": std >= cfg.min_embedding_std,
                     "detail": f"embedding std {std:.3f} {'>=' if std >= cfg.min_embedding_std else '<'} "
                               f"{cfg.min_embedding_std} (effective rank {report['health']['effective_rank']:.1f})"})
    if champ is None:
        raw, rnd = report["raw_pixels"][metric], report["random_init"][metric]
        ok = model[metric] > raw and model[metric] > rnd
        d.checks.append({"name": "baselines", "passed": ok,
                         "detail": f"{metric} {model[metric]:.4f} vs raw pixels {raw:.4f} and random init {rnd:.4f}"
                                   f"{'' if ok else ': the first champion must beat both'}"})
    else:
        delta = model[metric] - champ[metric]
        lo, hi = paired_bootstrap_ci(model["correct"][metric], champ["correct"][metric])
        ok = hi >= -cfg.tolerance
        d.checks.append({"name": "primary_metric", "passed": ok, "delta": delta, "delta_ci": [lo, hi],
                         "detail": f"{metric} {model[metric]:.4f} vs champion {champ[metric]:.4f}: {delta:+.4f} "
                                   f"(95% interval [{lo:+.4f}, {hi:+.4f}]"
                                   f"{'' if ok else f', wholly below -{cfg.tolerance}'})"})
        regressions = []
        for col, g in model["groups"].items():
            theirs = champ["groups"].get(col, {}).get("per_group", {})
            for value, acc in g["per_group"].items():
                if value in theirs and theirs[value]["accuracy"] - acc["accuracy"] > cfg.group_tolerance:
                    regressions.append(f"{col}={value} {acc['accuracy']:.3f} vs {theirs[value]['accuracy']:.3f}")
        if model["groups"]:
            d.checks.append({"name": "groups", "passed": not regressions,
                             "detail": (f"lost more than {cfg.group_tolerance}: " + ", ".join(regressions)) if regressions
                             else f"no group lost more than {cfg.group_tolerance} of linear-probe accuracy"})
    d.passed = all(c["passed"] for c in d.checks)
    return d
