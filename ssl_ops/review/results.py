"""What `sslpipe run` and `sslpipe demo` print at the end: the new model beside raw pixels, a random-init encoder
and the champion, from the probe report (ssl_ops.probes.report), then the gate's decision in one line.

    lines = results_table(report, "version 3 of ssl-encoder", champion_label="version 2 (champion)")
    lines += gate_lines(GateOutcome(model="ssl-encoder", version="3", passed=False, summary="failed: ...",
                                    review="gate_failed", champion_version="2"))

Pure text for a terminal. Every value that comes from the data or the registry (class names, group columns
and values, model names, the gate's details, which name group values) goes through ssl_ops.escape.terminal.
"""

from __future__ import annotations

from dataclasses import dataclass

from ssl_ops.escape import terminal

ROWS = (("model", None), ("raw_pixels", "raw pixels"), ("random_init", "random init (same architecture)"),
        ("champion", None))
FEW_LABELS = 0.1  # the label fraction shown beside the full linear probe
MAX_CLASSES_SHOWN = 8


def _pct(x) -> str:
    return "-" if x is None else f"{100 * float(x):.1f}%"


def _interval(ci) -> str:
    return "" if not ci else f"[{100 * float(ci[0]):.1f}, {100 * float(ci[1]):.1f}]"


def fraction_figure(table: dict, fraction: float = FEW_LABELS) -> tuple[float | None, int | None]:
    """(mean accuracy, labels used) of the linear probe with `fraction` of the probe's training labels, or
    (None, None) when the report has no such fraction."""
    for k, v in (table.get("label_fractions") or {}).items():
        try:
            if abs(float(k) - fraction) < 1e-9:
                return v.get("mean"), v.get("labels")
        except (TypeError, ValueError):
            continue
    return None, None


def results_table(report: dict, model_label: str, champion_label: str | None = None) -> list[str]:
    """The probe report as a few aligned lines: kNN k=20, linear with its 95% interval, linear with 10% of the
    labels, for the model, raw pixels, random init and (when the report has one) the champion; then the
    worst group of each group column. model_label / champion_label name the rows (escaped here)."""
    split = report.get("split") or {}
    classes = [terminal(c) for c in report.get("classes") or []]
    shown = ", ".join(classes[:MAX_CLASSES_SHOWN]) + (f", ... ({len(classes) - MAX_CLASSES_SHOWN} more)"
                                                      if len(classes) > MAX_CLASSES_SHOWN else "")
    _, few_n = fraction_figure(report.get("model") or {})
    few_head = "linear, 10% labels" + (f" ({few_n})" if few_n else "")
    head = ("", "kNN k=20", "linear [95% interval]", few_head)
    rows = []
    for key, label in ROWS:
        t = report.get(key)
        if not t:
            continue
        name = terminal(model_label) if key == "model" else (terminal(champion_label or "champion")
                                                             if key == "champion" else label)
        few, _ = fraction_figure(t)
        rows.append((name, _pct(t.get("knn20")), f"{_pct(t.get('linear')):>6} {_interval(t.get('linear_ci'))}".rstrip(),
                     _pct(few)))
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]

    def fmt(r) -> str:
        return "  " + r[0].ljust(widths[0]) + "".join(f"   {c.rjust(widths[i + 1]) if i != 1 else c.ljust(widths[i + 1])}"
                                                      for i, c in enumerate(r[1:])).rstrip()

    lines = [f"RESULTS on the eval set's probe test rows: {split.get('n_test', '?')} images, {len(classes)} classes "
             f"({shown}); probes trained on {split.get('n_train', '?')} labeled images",
             fmt(head).rstrip(), *[fmt(r) for r in rows]]
    for col, g in ((report.get("model") or {}).get("groups") or {}).items():
        worst = g.get("worst_group")
        if worst is None:
            continue
        n = (g.get("per_group") or {}).get(worst, {}).get("n")
        lines.append(f"  worst group of {terminal(col)}: {terminal(worst)} ({n} images), "
                     f"{100 * float(g.get('worst_group_gap') or 0):.1f} points below the model's linear probe")
    return lines


@dataclass
class GateOutcome:
    """The registered version's gate decision and review state, as registered_model recorded them."""
    model: str
    version: str
    passed: bool
    summary: str  # the gate's summary: "passed ..." or "failed: <check>: <detail>; ..."
    review: str  # pending, approved, gate_failed, rejected, ...
    champion_version: str | None  # the champion now (after this run)
    reused: bool = False  # nothing new was registered: the version is an earlier registration of this encoder
    approval: str = "human"

    @property
    def promoted(self) -> bool:
        """The gate passed: the version is the candidate (or the champion, approved by a person or the config)."""
        return bool(self.passed)


def _reason(summary: str) -> str:
    return summary[len("failed: "):] if summary.startswith("failed: ") else summary


def gate_lines(g: GateOutcome) -> list[str]:
    """One line for the decision (a WARNING when the gate did not pass, with the failed checks), plus one when
    nothing new was registered."""
    v = f"version {terminal(g.version)} of {terminal(g.model)}"
    champ = (f"the champion is still version {terminal(g.champion_version)}" if g.champion_version
             and g.champion_version != g.version else "there is no champion yet")
    out = []
    if g.reused:
        out.append(f"training reused: nothing new was registered; these are the figures of {v}, registered earlier "
                   f"(its review state now: {terminal(g.review)})")
    if not g.passed:
        out.append(f"WARNING: {v} did NOT pass the gate and was not promoted: {terminal(_reason(g.summary))}; {champ}")
    elif g.review == "approved" or (g.champion_version is not None and g.champion_version == g.version):
        how = " (registry.approval: auto)" if g.approval == "auto" and g.review == "approved" else ""
        out.append(f"GATE: passed; {v} is the champion{how}")
    elif g.review == "pending":
        out.append(f"GATE: passed; {v} is the candidate; the champion moves when a person approves it")
    else:
        out.append(f"GATE: passed; {v} is {terminal(g.review)} (a reviewer's decision); {champ}")
    return out


__all__ = ["GateOutcome", "fraction_figure", "gate_lines", "results_table"]
