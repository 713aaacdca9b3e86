"""Plots a reviewer looks at rather than reads, as matplotlib Figures (no pyplot, no display needed):
training loss and lr, accuracy against label fraction for the model and its baselines, and a 2-D projection
of eval embeddings coloured by class."""

from __future__ import annotations

from ssl_ops.review.card import ROWS


def _figure(w: float = 6.0, h: float = 4.0):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=100, layout="constrained")


def training_curves(metrics: list[dict], probes: list[dict] | None = None):
    """metrics: the rows of metrics.jsonl ({"step", "loss", "lr", ...}); probes: the rows of probes.jsonl
    ({"step", "knn20"}: the kNN probe in step with training, on held-out probe-train rows), a third panel."""
    fig = _figure(12 if probes else 8, 3.5)
    axes = fig.subplots(1, 3 if probes else 2)
    ax1, ax2 = axes[0], axes[1]
    steps = [r["step"] for r in metrics]
    ax1.plot(steps, [r["loss"] for r in metrics], lw=1)
    ax1.set(xlabel="step", ylabel="loss", title="training loss")
    ax2.plot(steps, [r["lr"] for r in metrics], lw=1, color="tab:orange")
    ax2.set(xlabel="step", ylabel="learning rate", title="learning rate")
    if probes:
        ax3 = axes[2]
        ax3.plot([r["step"] for r in probes], [100 * r["knn20"] for r in probes], marker="o", lw=1, color="tab:green")
        ax3.set(xlabel="steps done", ylabel="kNN k=20 accuracy (%)",
                title="probe while training (held-out probe-train images)")
    return fig


def label_fraction_curve(report: dict):
    fig = _figure()
    ax = fig.subplots()
    for key, label in ROWS:
        t = report.get(key)
        if t is None:
            continue
        fr = sorted(t["label_fractions"], key=float)
        xs = [100 * float(f) for f in fr]
        ys = [100 * t["label_fractions"][f]["mean"] for f in fr]
        es = [100 * t["label_fractions"][f]["std"] for f in fr]
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=label)
    ax.set(xscale="log", xlabel="labels used by the linear probe (%)", ylabel="test accuracy (%)",
           title="accuracy against label fraction")
    ticks = sorted({100 * float(f) for t in (report.get(k) for k, _ in ROWS) if t for f in t["label_fractions"]})
    ax.set_xticks(ticks, [f"{x:g}" for x in ticks])
    ax.legend()
    ax.grid(alpha=0.3)
    return fig


def projection_plot(report: dict):
    p = report["projection"]
    fig = _figure(5.5, 5)
    ax = fig.subplots()
    sc = ax.scatter(p["x"], p["y"], c=p["label"], cmap="tab10" if len(report["classes"]) <= 10 else "tab20", s=6)
    handles, _ = sc.legend_elements(num=None)
    if len(report["classes"]) <= 20:
        ax.legend(handles, [report["classes"][i] for i in sorted(set(p["label"]))], fontsize=7, loc="best",
                  markerscale=0.8)
    ax.set(title="eval embeddings, first two principal components", xticks=[], yticks=[])
    return fig
