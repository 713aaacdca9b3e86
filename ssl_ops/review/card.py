"""The model card: Markdown a reviewer reads in MLflow (the model version's description and an artifact).

    text = model_card(name="ssl-encoder", version="3", report=report, decision=decision, training=result,
                      config=train_config, lineage=lineage)

Sections: what it is, the data it saw (and its digests), training, the probe table with its baselines (and
the champion on the same split), the data-efficiency curve, per-group accuracy, health, the gate's decision
with every check, and lineage. Everything from the data (batch names, group names and values, paths, details
that quote them) goes through ssl_ops.escape: md_text in tables and prose, md_code for code-style values.
"""

from __future__ import annotations

from dataclasses import asdict

from ssl_ops.escape import md_code, md_text
from ssl_ops.review.gate import SEED_SPREAD_NOTE, GateConfig, GateDecision, group_judgements

ROWS = (("model", "this model"), ("champion", "champion"), ("random_init", "random init (same architecture)"),
        ("raw_pixels", "raw pixels"))


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _ci(ci) -> str:
    return f"[{_pct(ci[0])}, {_pct(ci[1])}]"


def probe_table(report: dict) -> str:
    fr = list(report["model"]["label_fractions"])
    head = ("| encoder | kNN k=20 | kNN k=200 | linear [95% CI] | "
            + " | ".join(f"linear, {float(f) * 100:g}% labels" for f in fr) + " |")
    lines = [head, "|" + "---|" * (4 + len(fr))]
    for key, label in ROWS:
        t = report.get(key)
        if t is None:
            continue
        curve = " | ".join(f"{_pct(t['label_fractions'][f]['mean'])} ± {_pct(t['label_fractions'][f]['std'])}"
                           if t["label_fractions"][f]["draws"] > 1 else _pct(t["label_fractions"][f]["mean"])
                           for f in fr)
        lines.append(f"| {label} | {_pct(t['knn20'])} {_ci(t['knn20_ci'])} | {_pct(t['knn200'])} {_ci(t['knn200_ci'])} | "
                     f"{_pct(t['linear'])} {_ci(t['linear_ci'])} | {curve} |")
    return "\n".join(lines)


WORST_GROUP_GAP = ("worst-group gap: the linear probe's accuracy on all test images minus its accuracy on the group "
                   "it gets least right, in points (0 when every group scores the same)")


def interval_note(cfg: dict | None) -> str:
    """What the 95% intervals cover and what they do not, and the seed margin that covers the rest (the gate's
    config as a dict; None: the defaults)."""
    c = {**asdict(GateConfig()), **(cfg or {})}
    m = 100 * c["seed_margin"]
    return (f"The 95% intervals are bootstrap intervals over the test images (the test rows resampled, 1,000 "
            f"times; paired for differences between two encoders, which see the same rows): they cover which eval "
            f"images happened to be in the test split. They do not cover training-seed variance: the same config "
            f"trained again with another seed scores differently. The gate's seed margin ({m:.1f} points, "
            f"{SEED_SPREAD_NOTE}) covers that: a challenger is an improvement only when its interval against "
            f"the champion lies wholly above +{m:.1f} points, and a regression only when it lies wholly below "
            f"-{100 * (c['seed_margin'] + c['tolerance']):.1f} points (seed margin plus tolerance).")


def group_tables(report: dict, cfg: GateConfig | None = None) -> str:
    """Per group column: each value's test images, this model's linear-probe accuracy beside raw pixels and random
    init, and with a champion its accuracy and the paired difference with its interval; groups under
    min_group_size are marked too small to judge."""
    cfg = cfg or GateConfig()
    rows = group_judgements(report, cfg)
    out = []
    for col, g in report["model"]["groups"].items():
        mine = [r for r in rows if r["column"] == col]
        champ = any(r["champion"] is not None for r in mine)
        worst = md_code(g["worst_group"]) if g["worst_group"] else "(none)"
        head = "| " + md_text(col) + " | n | this model | raw pixels | random init |" + (
            " champion | difference [95% CI] | judged |" if champ else "")
        lines = [f"**{md_text(col)}** (linear probe, accuracy %; worst group {worst}, worst-group gap "
                 f"{_pct(g['worst_group_gap'])} points)", "", head, "|---|---|---|---|---|" + ("---|---|---|" if champ else "")]
        for r in mine:
            row = (f"| {md_text(r['value']) if r['value'] else '(none)'} | {r['n']} | {_pct(r['accuracy'])} | "
                   f"{_opt(r['raw_pixels'])} | {_opt(r['random_init'])} |")
            if champ:
                diff = "-" if r["delta"] is None else f"{100 * r['delta']:+.1f}" + (
                    f" [{100 * r['ci'][0]:+.1f}, {100 * r['ci'][1]:+.1f}]" if r["ci"] else "")
                judged = ("too small to judge" if r["n"] < cfg.min_group_size else
                          "lost" if r["regressed"] else "ok" if r["judged"] else "-")
                row += f" {_opt(r['champion'])} | {diff} | {judged} |"
            lines.append(row)
        out.append("\n".join(lines))
    if not out:
        return "The eval set has no group columns."
    return "\n\n".join(out) + (
        f"\n\nThe {WORST_GROUP_GAP}. A group is judged against the champion by the paired 95% interval of its own test "
        f"images: it lost when the whole interval lies below -{100 * cfg.group_tolerance:.1f} points; groups with fewer "
        f"than {cfg.min_group_size} test images are too small to judge (one image is more than "
        f"{100 / cfg.min_group_size:.1f} points there) and are reported, not judged.")


def _opt(x) -> str:
    return "-" if x is None else _pct(x)


def model_card(name: str, version: str | None, report: dict, decision: GateDecision, training: dict, config: dict,
               lineage: dict, champion_version: str | None = None, approval: str = "human") -> str:
    """approval: "human" (a passing version becomes the candidate, champion once a reviewer approves) or "auto"."""
    m = report["model"]
    h = report["health"]
    cfg = GateConfig(**{k: v for k, v in decision.config.items() if k in GateConfig.__dataclass_fields__})
    split = report["split"]
    if not decision.passed:
        verdict = "**not promoted** (stays challenger)"
    elif approval == "auto":
        verdict = "**passed: promoted to champion** (registry.approval: auto, no reviewer)"
    else:
        verdict = f"**passed: candidate**, champion once a reviewer approves it (`sslpipe approve {name}@{version}`)"
    checks = "\n".join(f"- {'pass' if c['passed'] else 'FAIL'} {md_code(c['name'])}: {md_code(c['detail'])}"
                       for c in decision.checks)
    notes = "".join(f"\n- note: {md_text(n)}" for n in decision.notes)
    data = "\n".join(f"- {md_code(b)}: shard index digest {md_code(lineage['shard_index_digests'][b][:16])}, manifest "
                     f"digest {md_code((lineage['manifest_digests'].get(b) or '?')[:16])}, contract "
                     f"{md_code(lineage['contracts'].get(b, '?'))}" for b in lineage["batches"])
    return f"""# {md_text(name)} version {md_text(version or '(new)')}

A self-supervised image encoder: **{config['method']}** on a **{config['backbone']}** backbone
({'width ' + str(config['width']) + ', ' if config['backbone'].startswith('resnet') else ''}{config['image_size']} px input),
returning {m['dim']}-dimensional embeddings. Load it with {md_code(f'mlflow.pyfunc.load_model("models:/{name}/{version}")')};
`predict` takes a uint8 array of images `[N, H, W, C]` (any size; C = 1, 3 or 4) and returns float32 `[N, {m['dim']}]`.

## Gate decision: {verdict}
Against the {decision.against}{f' (version {champion_version})' if champion_version else ''}, on {md_code(decision.metric)}: {md_text(decision.summary)}

{checks}{notes}

## Data it saw
{training['samples']} unlabeled images in {len(lineage['batches'])} batch(es), {training['steps']} steps of batch
{config['batch_size']} ({training['images_seen']} images seen):

{data}

Evaluated on the labeled eval set {md_code(lineage['eval_digest'][:16])} ({len(report['classes'])} classes; probe split seed
{split['seed']}: {split['n_train']} train / {split['n_test']} test images).

## Probes (accuracy, %)
{probe_table(report)}

kNN is cosine, temperature-weighted (T = 0.1); the linear probe is logistic regression on standardised
features with C chosen on held-out training rows (C = {m['linear_C']:g} for this model). Label fractions are
of the probe's training split; below 100% each is the mean ± std of several seeded draws. Each encoder is
probed from the eval images decoded at its own input size ({_sizes(report)}); the baselines at this model's.

{interval_note(decision.config)}

## Per-group accuracy
{group_tables(report, cfg)}

## Health (eval images)
| embedding std (x sqrt D) | effective rank | uniformity | alignment |
|---|---|---|---|
| {h['embedding_std']:.3f} | {h['effective_rank']:.1f} | {h['uniformity']:.3f} | {h['alignment']:.3f} |

## Training
Final loss {training['final_loss']:.4f}; {training['images_per_s']:.0f} images/s on {training['device']}
(world size {training['world']}), {training['wall_s']:.0f} s. Config: {md_code(_compact(config))}.

## Lineage
- MLflow run {md_code(lineage.get('mlflow_run_id', '?'))}; Dagster run {md_code(lineage.get('dagster_run_id', '?'))}
- code version (git): {md_code(lineage.get('git_sha', 'unknown'))}; training run key {md_code(lineage.get('run_key', '?'))}
"""


def _sizes(report: dict) -> str:
    return ", ".join(f"{label} {report[k]['image_size']} px" for k, label in ROWS[:2]
                     if report.get(k) and report[k].get("image_size") is not None) or "sizes not recorded"


def _compact(config: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in config.items() if k not in ("method", "backbone"))
