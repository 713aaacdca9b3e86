"""The champion/challenger gate, the paired bootstrap it reads, the model card and the plots, on real probe
tables built from blobs (ssl_ops.probes.probe_features) so that every figure is a real probe's."""

import io

import numpy as np
import pytest

from ssl_ops.escape import md_code, md_text
from ssl_ops.probes import paired_bootstrap_ci, probe_features, probe_split
from ssl_ops.review import GateConfig, decide, model_card
from ssl_ops.review.gate import group_judgements
from ssl_ops.review.plots import label_fraction_curve, projection_plot, training_curves

LEAK_OK = (True, "no eval image in a shard")
HEALTHY = {"embedding_std": 0.8, "effective_rank": 30.0, "uniformity": -2.0, "alignment": 0.4}


def blobs(spread, n=400, d=16, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n // classes)
    centres = np.random.default_rng(99).normal(size=(classes, d)) * 3
    return centres[y] + rng.normal(size=(n, d)) * spread, y


def table(spread, groups=None, seed=0):
    x, y = blobs(spread, seed=seed)
    return probe_features(x, y, probe_split(y, 0.3, 0), groups=groups, draws=2)


def report(model, raw, rnd, champion=None, health=HEALTHY):
    r = {"model": model, "raw_pixels": raw, "random_init": rnd, "health": dict(health), "classes": list("abcd"),
         "split": {"seed": 0, "test_fraction": 0.3, "n_train": 280, "n_test": 120}}
    if champion is not None:
        r["champion"] = champion
    return r


GOOD, OK, BAD = table(1.0), table(2.5), table(12.0)


def test_paired_interval_is_the_difference_of_means_and_narrower_than_unpaired():
    rng = np.random.default_rng(0)
    a = (rng.random(300) < 0.8).astype(int)
    b = a.copy()
    flip = rng.choice(300, 15, replace=False)
    b[flip] = 1 - b[flip]
    lo, hi = paired_bootstrap_ci(a, b)
    d = a.mean() - b.mean()
    assert lo <= d <= hi and hi - lo < 0.06  # the rows both get right cancel
    assert paired_bootstrap_ci(a, a) == (0.0, 0.0)
    with pytest.raises(ValueError, match="same split"):
        paired_bootstrap_ci(a, b[:-1])


def test_first_model_is_promoted_only_when_it_beats_both_baselines():
    assert GOOD["linear"] > OK["linear"] > BAD["linear"]
    d = decide(report(GOOD, raw=OK, rnd=BAD), GateConfig(), "simclr", LEAK_OK)
    assert d.passed and d.against == "baselines" and [c["name"] for c in d.checks] == ["leakage", "collapse", "baselines"]
    assert d.summary == "passed leakage, collapse, baselines (against the baselines)"
    d = decide(report(OK, raw=GOOD, rnd=BAD), GateConfig(), "simclr", LEAK_OK)
    assert not d.passed and d.summary.startswith("failed: baselines:") and "raw pixels" in d.summary
    assert d.to_dict()["summary"] == d.summary and "leakage" not in d.summary  # only the failed checks are named


NOISE = table(30.0)  # a baseline that every table above beats


def test_a_clearly_worse_challenger_is_refused_and_an_equal_one_passes():
    assert BAD["linear"] > NOISE["linear"]
    worse = decide(report(BAD, NOISE, NOISE, champion=GOOD), GateConfig(), "simclr", LEAK_OK)
    assert not worse.passed and worse.against == "champion"
    (c,) = worse.failed
    assert c["name"] == "primary_metric" and c["verdict"] == "regression" and "vs champion" in c["detail"]
    assert c["delta_ci"][1] < -GateConfig().seed_margin
    same = decide(report(GOOD, OK, BAD, champion=GOOD), GateConfig(), "simclr", LEAK_OK)
    assert same.passed and same.checks[3]["delta"] == 0 and same.checks[3]["verdict"] == "no clear difference"
    better = decide(report(GOOD, OK, BAD, champion=OK), GateConfig(), "simclr", LEAK_OK)
    assert better.passed and better.checks[3]["delta"] > 0
    assert "(against the champion: no clear difference on linear, +0.8 points [" in better.summary


def test_a_candidate_that_loses_to_raw_pixels_fails_with_a_champion_in_place_naming_the_baseline():
    """A retrain far better than a weak champion that raw pixels still beat: refused, whatever the champion."""
    assert OK["linear"] < GOOD["linear"]
    d = decide(report(OK, raw=GOOD, rnd=BAD, champion=BAD), GateConfig(), "simclr", LEAK_OK)
    assert d.against == "champion" and not d.passed
    assert [c["name"] for c in d.checks] == ["leakage", "collapse", "baselines", "primary_metric"]
    (c,) = d.failed
    assert c["name"] == "baselines" and "does not beat raw pixels;" in c["detail"] and "random init;" not in c["detail"]
    assert "every new model must beat both baselines, with a champion in place too" in d.summary
    assert d.checks[3]["passed"] and d.checks[3]["verdict"] == "improvement"  # the champion comparison stays
    d = decide(report(OK, raw=BAD, rnd=GOOD, champion=BAD), GateConfig(), "simclr", LEAK_OK)
    assert [c["name"] for c in d.failed] == ["baselines"] and "does not beat random init" in d.summary
    assert decide(report(GOOD, raw=OK, rnd=BAD, champion=BAD), GateConfig(), "simclr", LEAK_OK).passed


def test_the_seed_margin_decides_improvement_and_regression_beyond_the_test_row_interval():
    """Two encoders whose paired interval excludes 0 but not the seed margin differ by no more than retraining
    with another seed would: neither an improvement nor a regression. Without the margin, the same figures are."""
    a, b = table(4.0), table(4.5)
    lo, hi = paired_bootstrap_ci(a["correct"]["linear"], b["correct"]["linear"])
    assert 0 < lo < GateConfig().seed_margin < hi  # "significant" by the interval alone
    up = decide(report(a, NOISE, NOISE, champion=b), GateConfig(), "simclr", LEAK_OK)
    down = decide(report(b, NOISE, NOISE, champion=a), GateConfig(), "simclr", LEAK_OK)
    assert up.passed and up.checks[-1]["verdict"] == "no clear difference" and up.checks[-1]["delta_ci"] == [lo, hi]
    assert down.passed and down.checks[-1]["verdict"] == "no clear difference"  # a loss within the margin
    assert "within the noise of test rows and training seeds" in down.checks[-1]["detail"]
    bare = GateConfig(seed_margin=0.0)
    assert decide(report(a, NOISE, NOISE, champion=b), bare, "simclr", LEAK_OK).checks[-1]["verdict"] == "improvement"
    refused = decide(report(b, NOISE, NOISE, champion=a), bare, "simclr", LEAK_OK)
    assert not refused.passed and refused.checks[-1]["verdict"] == "regression"
    # the tolerance adds to the margin on the losing side only
    lo2, hi2 = refused.checks[-1]["delta_ci"]
    assert decide(report(b, NOISE, NOISE, champion=a), GateConfig(seed_margin=0.0, tolerance=0.01), "simclr",
                  LEAK_OK).passed == (hi2 >= -0.01)
    wide = GateConfig(seed_margin=0.6)
    d = decide(report(GOOD, NOISE, NOISE, champion=BAD), wide, "simclr", LEAK_OK)
    assert d.passed and d.checks[-1]["verdict"] == "no clear difference"
    assert decide(report(GOOD, NOISE, NOISE, champion=BAD), GateConfig(), "simclr", LEAK_OK).checks[-1]["verdict"] == \
        "improvement"


def _grouped(spread_sketch: float, seed: int = 0, rare_every: int = 0):
    """Blobs with a domain column (photo/sketch alternating; every rare_every-th image `rare`), the sketch rows'
    features noised to `spread_sketch`: a real probe whose sketch accuracy falls with it."""
    x, y = blobs(1.0, seed=seed)
    dom = np.array(["photo", "sketch"] * (len(y) // 2), dtype=object)
    if rare_every:
        dom[::rare_every] = "rare"
    rng = np.random.default_rng(seed + 7)
    sk = dom == "sketch"
    x[sk] += rng.normal(size=(sk.sum(), x.shape[1])) * spread_sketch
    return probe_features(x, y, probe_split(y, 0.3, 0), groups={"domain": dom}, fractions=(1.0,))


def test_a_group_that_regresses_blocks_promotion():
    champ, model = _grouped(0.0), _grouped(12.0)
    per = model["groups"]["domain"]["per_group"]
    assert per["sketch"]["accuracy"] < champ["groups"]["domain"]["per_group"]["sketch"]["accuracy"] - 0.2
    d = decide(report(model, NOISE, NOISE, champion=champ), GateConfig(group_tolerance=0.05, seed_margin=0.5),
               "simclr", LEAK_OK)
    assert not d.passed and [c["name"] for c in d.failed] == ["groups"] and "domain=sketch" in d.summary
    assert "photo" not in d.failed[0]["detail"].split(";")[0]


def test_a_group_is_judged_on_its_interval_and_small_groups_are_reported_too_small_to_judge():
    champ = _grouped(0.0, rare_every=20)
    model = _grouped(3.0, rare_every=20)  # sketch loses some
    rows = {r["value"]: r for r in group_judgements(report(model, NOISE, NOISE, champion=champ), GateConfig())}
    assert rows["rare"]["n"] < 30 <= rows["sketch"]["n"]
    sk = rows["sketch"]
    assert sk["delta"] < 0 and sk["ci"][0] <= sk["delta"] <= sk["ci"][1] and sk["judged"]
    lo, hi = sk["ci"]
    d = decide(report(model, NOISE, NOISE, champion=champ), GateConfig(group_tolerance=0.05), "simclr", LEAK_OK)
    g = d.checks[-1]
    assert -sk["delta"] > 0.05 and hi >= -0.05  # a loss beyond group_tolerance whose interval reaches back above it:
    assert g["name"] == "groups" and g["passed"]  # not judged a regression on the point estimate
    assert f"too small to judge (under 30 test images): domain=rare (n={rows['rare']['n']})" in g["detail"]
    assert any("too small to judge" in n and "domain=rare" in n for n in d.notes)
    # judged on the interval, not the point estimate: a loss larger than group_tolerance whose interval reaches
    # back above -group_tolerance passes
    assert not decide(report(model, NOISE, NOISE, champion=champ), GateConfig(group_tolerance=-hi / 2), "simclr",
                      LEAK_OK).checks[-1]["passed"]  # a tolerance below the interval's upper end: lost
    # with a minimum group size above every group, nothing is judged and everything is listed
    d = decide(report(model, NOISE, NOISE, champion=champ), GateConfig(min_group_size=500), "simclr", LEAK_OK)
    assert d.checks[-1]["passed"] and "(0 judged)" in d.checks[-1]["detail"]
    assert all(f"domain={v}" in d.checks[-1]["detail"] for v in ("photo", "sketch", "rare"))


def test_collapse_and_leakage_each_block_promotion_with_their_reason():
    d = decide(report(GOOD, OK, BAD, health={**HEALTHY, "embedding_std": 0.01}), GateConfig(), "simclr", LEAK_OK)
    assert [c["name"] for c in d.failed] == ["collapse"] and "0.010 < 0.1" in d.summary
    d = decide(report(GOOD, OK, BAD), GateConfig(), "simclr", (False, "3 eval images in shards"))
    assert [c["name"] for c in d.failed] == ["leakage"] and "3 eval images" in d.summary


def test_mae_is_judged_on_the_linear_probe_whatever_the_primary_metric():
    d = decide(report(GOOD, OK, BAD), GateConfig(primary_metric="knn20"), "mae", LEAK_OK)
    assert d.metric == "linear" and d.notes and "linear probe" in d.notes[0]
    assert decide(report(GOOD, OK, BAD), GateConfig(primary_metric="knn20"), "simclr", LEAK_OK).metric == "knn20"


@pytest.mark.parametrize("bad", [{"primary_metric": "f1"}, {"tolerance": -0.1}, {"group_tolerance": "a"},
                                 {"seed_margin": 2.0}, {"min_group_size": 0}, {"min_group_size": 2.5}])
def test_gate_config_refuses_nonsense(bad):
    with pytest.raises(ValueError, match="gate"):
        GateConfig(**bad)


def test_model_card_holds_the_decision_tables_and_lineage():
    g = {"domain": np.array(["photo", "sketch"] * 200, dtype=object)}
    r = report(table(12.0, groups=g), table(2.5, groups=g), table(12.0, groups=g, seed=3), champion=table(1.0, groups=g))
    d = decide(r, GateConfig(), "simclr", LEAK_OK)
    lineage = {"batches": ["b1"], "shard_index_digests": {"b1": "ab" * 32}, "manifest_digests": {"b1": "cd" * 32},
               "contracts": {"b1": "unlabeled_images@1.0.0"}, "eval_digest": "ef" * 32, "git_sha": "123abc",
               "dagster_run_id": "run-1", "run_key": "key-1", "mlflow_run_id": "mlrun"}
    training = {"samples": 400, "steps": 1, "images_seen": 32, "final_loss": 5.0, "images_per_s": 100.0,
                "device": "cpu", "world": 1, "wall_s": 3.0}
    cfg = {"method": "simclr", "backbone": "resnet18", "width": 8, "image_size": 32, "batch_size": 32}
    card = model_card("ssl-encoder", "2", r, d, training, cfg, lineage, champion_version="1")
    assert "**not promoted**" in card and d.failed[0]["detail"] in card and "(version 1)" in card
    assert "| this model |" in card and "| champion |" in card and "| raw pixels |" in card
    assert "**domain**" in card and "| sketch |" in card
    # what the intervals cover, and the margin that covers what they do not
    assert "the test rows resampled" in card and "do not cover training-seed variance" in card
    assert "seed margin (5.0 points, measured by bench/seed_spread.py)" in card
    # per group: the baselines beside the model and the champion, the paired difference, the definition of the gap
    assert "| domain | n | this model | raw pixels | random init | champion | difference [95% CI] | judged |" in card
    rawg = r["raw_pixels"]["groups"]["domain"]["per_group"]["sketch"]["accuracy"]
    sk = next(line for line in card.splitlines() if line.startswith("| sketch |"))
    assert f"| {100 * rawg:.1f} |" in sk and sk.endswith(("| ok |", "| lost |"))
    assert "worst-group gap: the linear probe's accuracy on all test images minus its accuracy on the group" in card
    assert "fewer than 30 test images are too small to judge" in card
    assert "abababababababab" in card and "unlabeled_images@1.0.0" in card and "123abc" in card
    assert 'mlflow.pyfunc.load_model("models:/ssl-encoder/2")' in card
    assert "## Gate decision: **not promoted** (stays challenger)" in card
    assert d.summary.startswith("failed: baselines: ") and "; primary_metric: linear " in d.summary
    assert f"Against the champion (version 1), on {md_code('linear')}: {md_text(d.summary)}\n" in card


def test_model_card_verdict_follows_the_registry_approval_mode():
    """A passing version is the candidate (champion once a reviewer approves) unless registry.approval is auto."""
    r = report(GOOD, OK, BAD)
    d = decide(r, GateConfig(), "simclr", LEAK_OK)
    assert d.passed
    lineage = {"batches": ["b1"], "shard_index_digests": {"b1": "ab" * 32}, "manifest_digests": {"b1": "cd" * 32},
               "contracts": {"b1": "unlabeled_images@1.0.0"}, "eval_digest": "ef" * 32, "git_sha": "123abc",
               "dagster_run_id": "run-1", "run_key": "key-1", "mlflow_run_id": "mlrun"}
    training = {"samples": 400, "steps": 1, "images_seen": 32, "final_loss": 5.0, "images_per_s": 100.0,
                "device": "cpu", "world": 1, "wall_s": 3.0}
    cfg = {"method": "simclr", "backbone": "resnet18", "width": 8, "image_size": 32, "batch_size": 32}
    human = model_card("ssl-encoder", "3", r, d, training, cfg, lineage)  # approval defaults to human
    assert ("## Gate decision: **passed: candidate**, champion once a reviewer approves it "
            "(`sslpipe approve ssl-encoder@3`)") in human
    assert "promoted to champion" not in human and "not promoted" not in human
    assert f"on {md_code('linear')}: passed leakage, collapse, baselines (against the baselines)\n" in human
    auto = model_card("ssl-encoder", "3", r, d, training, cfg, lineage, approval="auto")
    assert "## Gate decision: **passed: promoted to champion** (registry.approval: auto, no reviewer)" in auto
    assert "sslpipe approve" not in auto and "candidate" not in auto


def test_plots_render_to_png():
    r = report(GOOD, OK, BAD, champion=OK)
    r["projection"] = {"x": [0.0, 1.0, 2.0], "y": [1.0, 0.0, 2.0], "label": [0, 1, 2]}
    rows = [{"step": s, "loss": 5.0 - s / 10, "lr": 0.001 * s} for s in range(20)]
    for fig in (training_curves(rows), label_fraction_curve(r), projection_plot(r)):
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        assert buf.getvalue()[:8] == b"\x89PNG\r\n\x1a\n" and len(buf.getvalue()) > 5000
    ax = label_fraction_curve(r).axes[0]
    assert len(ax.get_lines()) >= 4  # model, champion, random init, raw pixels
    probes = [{"step": s, "knn20": 0.1 + s / 100} for s in (0, 10, 20)]
    fig = training_curves(rows, probes)  # the probe in step with training: a third panel with its curve
    assert len(fig.axes) == 3 and "probe while training" in fig.axes[2].get_title()
    assert list(fig.axes[2].get_lines()[0].get_ydata()) == pytest.approx([10.0, 20.0, 30.0])
    assert len(training_curves(rows).axes) == 2
